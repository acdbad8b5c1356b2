"""Every caption revision of a run as one Parquet table, for analysis.

JSON columns (``params``, ``edits``, ``parent_ids``) are stored as JSON strings.
The database holds no secrets, so every column is exported.

Example::

    async with read_scope(engine) as session:
        n = await export_captions(session, "run-1", Path("captions.parquet"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pathgen.export.samples import get_run
from pathgen.export.shards import write_atomic
from pathgen.store.models import CaptionRevision

_JSON_COLUMNS = ("params", "edits", "parent_ids")


def _schema() -> Any:
    import pyarrow as pa

    fields = []
    for column in CaptionRevision.__table__.columns:
        name = column.name
        if name in _JSON_COLUMNS:
            kind = pa.string()
        elif name == "created_at":
            kind = pa.timestamp("us", tz="UTC")
        else:
            py = column.type.python_type
            kind = {int: pa.int64(), float: pa.float64(), str: pa.string()}.get(py, pa.string())
        fields.append(pa.field(name, kind, nullable=column.nullable or name in _JSON_COLUMNS))
    return pa.schema(fields)


async def export_captions(session: AsyncSession, run_id: str, out: Path) -> int:
    """Write every revision of ``run_id`` (by id) to the Parquet file ``out``; returns the count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    await get_run(session, run_id)
    revs = await session.scalars(
        select(CaptionRevision).where(CaptionRevision.run_id == run_id).order_by(CaptionRevision.id)
    )
    schema = _schema()
    columns: dict[str, list[Any]] = {f.name: [] for f in schema}
    count = 0
    for rev in revs:
        count += 1
        for name in columns:
            value = getattr(rev, name)
            if name in _JSON_COLUMNS:
                value = None if value is None else json.dumps(value, sort_keys=True)
            columns[name].append(value)
    table = pa.table(columns, schema=schema)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buf.getvalue().to_pybytes())
    return count
