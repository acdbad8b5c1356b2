"""Instruct export writers: LLaVA training JSON, LLaVA question/answer files, OpenAI chat
fine-tuning JSONL and Parquet (Hugging Face ``datasets``), one file set per split.

Every format writes the tiles to ``images/KEY.jpg`` (fixed JPEG settings), which the
LLaVA files name relative to the output folder (LLaVA's ``--image_folder``) and the
OpenAI and Parquet files embed. Images are the slow part: each is recorded in
``_export_state.json`` when written, so an interrupted export resumes with the images it
finished. Files are written atomically with sorted keys, so exporting the same run twice
gives byte-identical files.

* ``llava``: ``{split}.json``: ``[{"id", "image", "conversations": [{"from": "human",
  "value": "<image>\\nQ1"}, {"from": "gpt", "value": "A1"}, ...], "metadata"}]``;
* ``llava-questions``: ``{split}_questions.jsonl`` (``question_id``, ``image``, ``text``,
  ``category``) and ``{split}_answers.jsonl`` (``question_id``, ``text``, ``category``,
  ``answer_label``), single-turn items only (what ``llava.eval.model_vqa`` reads);
* ``openai``: ``{split}.jsonl``: ``{"messages": [user (text + image part), assistant, ...]}``;
* ``parquet``: ``{split}.parquet`` with ``id``, ``image`` (a ``datasets`` Image),
  ``messages`` (``role``/``content``; ``<image>`` opens the first user turn), ``kind``,
  ``slide``, ``tile_id``, ``item_id``.

Example::

    result = write_instruct(records, Path("out"), fmt="llava")
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathgen.errors import ExportError
from pathgen.export.instruct import SPLITS, InstructRecord, split_slides
from pathgen.export.shards import ExportState, file_sha256, write_atomic
from pathgen.export.webdataset import encode_jpeg
from pathgen.slides import SlideCache, read_tile

FORMATS: tuple[str, ...] = ("llava", "llava-questions", "openai", "parquet")
IMAGES = "images"
SPLIT_FILE = "split.json"
IMAGE_TOKEN = "<image>"
JPEG_QUALITY = 95

Progress = Callable[[int, int], None]


@dataclass
class InstructExportResult:
    out_dir: Path
    counts: dict[str, int]
    slides: dict[str, list[str]]
    files: list[str] = field(default_factory=list)
    images_written: int = 0
    images_kept: int = 0


def _image_name(r: InstructRecord) -> str:
    return f"{IMAGES}/{r.key}.jpg"


def _image_plan(r: InstructRecord) -> str:
    return hashlib.sha256(
        f"{r.slide_path}|{r.x}|{r.y}|{r.size}|{r.tile_px}|jpeg{JPEG_QUALITY}".encode()
    ).hexdigest()


def write_images(
    records: Sequence[InstructRecord],
    out_dir: Path,
    *,
    workers: int = 4,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Write every record's tile to ``images/`` (keeping those an earlier export finished);
    returns (written, kept)."""
    (out_dir / IMAGES).mkdir(parents=True, exist_ok=True)
    state = ExportState.load(out_dir)
    cache = SlideCache()
    tiles = {r.key: r for r in records}
    todo = [
        r for r in tiles.values() if not state.is_complete(out_dir, _image_name(r), _image_plan(r))
    ]
    kept = len(tiles) - len(todo)

    def encode(r: InstructRecord) -> tuple[InstructRecord, bytes]:
        tile = read_tile(cache.get(r.slide_path), r.x, r.y, r.size, r.tile_px)
        return r, encode_jpeg(tile, JPEG_QUALITY)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, (r, jpeg) in enumerate(pool.map(encode, todo), start=1):
            write_atomic(out_dir / _image_name(r), jpeg)
            state.record(_image_name(r), _image_plan(r), 1, file_sha256(out_dir / _image_name(r)))
            if done % 64 == 0 or done == len(todo):
                state.save(out_dir)
            if progress is not None:
                progress(done, len(todo))
    state.save(out_dir)
    return len(todo), kept


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def llava_record(r: InstructRecord) -> dict[str, Any]:
    """One LLaVA training record; ``<image>`` opens the first human turn."""
    conversations = []
    for i, turn in enumerate(r.turns):
        question = f"{IMAGE_TOKEN}\n{turn['question']}" if i == 0 else turn["question"]
        conversations.append({"from": "human", "value": question})
        conversations.append({"from": "gpt", "value": turn["answer"]})
    return {
        "id": r.record_id,
        "image": _image_name(r),
        "conversations": conversations,
        "metadata": r.provenance,
    }


def _questions(records: Sequence[InstructRecord]) -> tuple[bytes, bytes]:
    questions, answers = [], []
    for r in records:
        if len(r.turns) != 1:
            continue
        turn = r.turns[0]
        common = {"question_id": r.record_id, "category": r.kind}
        questions.append(_dumps({**common, "image": _image_name(r), "text": turn["question"]}))
        label = turn.get("answer_label") or turn.get("answer_letter")
        answers.append(_dumps({**common, "text": turn["answer"], "answer_label": label}))
    return _lines(questions), _lines(answers)


def _lines(rows: list[str]) -> bytes:
    return "".join(f"{row}\n" for row in rows).encode()


def openai_record(r: InstructRecord, jpeg: bytes) -> dict[str, Any]:
    """One chat fine-tuning record: the tile as an image part of the first user turn."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(r.turns):
        content: Any = turn["question"]
        if i == 0:
            content = [
                {"type": "text", "text": turn["question"]},
                {"type": "image_url", "image_url": {"url": url}},
            ]
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": turn["answer"]})
    return {"messages": messages, "metadata": r.provenance}


def chat_messages(r: InstructRecord) -> list[dict[str, str]]:
    """``role``/``content`` turns; ``<image>`` opens the first user turn."""
    out = []
    for i, turn in enumerate(r.turns):
        question = f"{IMAGE_TOKEN}\n{turn['question']}" if i == 0 else turn["question"]
        out += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": turn["answer"]},
        ]
    return out


_HF_FEATURES = {
    "id": {"dtype": "string", "_type": "Value"},
    "image": {"_type": "Image"},
    "messages": [
        {
            "content": {"dtype": "string", "_type": "Value"},
            "role": {"dtype": "string", "_type": "Value"},
        }
    ],
    "kind": {"dtype": "string", "_type": "Value"},
    "slide": {"dtype": "string", "_type": "Value"},
    "tile_id": {"dtype": "int64", "_type": "Value"},
    "item_id": {"dtype": "int64", "_type": "Value"},
}


def parquet_bytes(
    records: Sequence[InstructRecord], jpeg: Callable[[InstructRecord], bytes]
) -> bytes:
    """A Parquet table whose schema metadata tells ``datasets`` that ``image`` is an Image."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    message_type = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))
    table = pa.table(
        {
            "id": pa.array([r.record_id for r in records], pa.string()),
            "image": pa.array(
                [{"bytes": jpeg(r), "path": f"{r.key}.jpg"} for r in records], image_type
            ),
            "messages": pa.array(
                [
                    [{"content": m["content"], "role": m["role"]} for m in chat_messages(r)]
                    for r in records
                ],
                message_type,
            ),
            "kind": pa.array([r.kind for r in records], pa.string()),
            "slide": pa.array([r.slide for r in records], pa.string()),
            "tile_id": pa.array([r.tile_id for r in records], pa.int64()),
            "item_id": pa.array([r.item_id for r in records], pa.int64()),
        }
    )
    meta = {b"huggingface": json.dumps({"info": {"features": _HF_FEATURES}}).encode()}
    table = table.replace_schema_metadata(meta)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


def _files(
    fmt: str, split: str, records: Sequence[InstructRecord], jpeg: Callable[[InstructRecord], bytes]
) -> dict[str, bytes]:
    if fmt == "llava":
        body = json.dumps(
            [llava_record(r) for r in records], sort_keys=True, ensure_ascii=False, indent=1
        )
        return {f"{split}.json": body.encode()}
    if fmt == "llava-questions":
        questions, answers = _questions(records)
        return {f"{split}_questions.jsonl": questions, f"{split}_answers.jsonl": answers}
    if fmt == "openai":
        return {f"{split}.jsonl": _lines([_dumps(openai_record(r, jpeg(r))) for r in records])}
    return {f"{split}.parquet": parquet_bytes(records, jpeg)}


def write_instruct(
    records: Sequence[InstructRecord],
    out_dir: Path,
    *,
    fmt: str = "llava",
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    workers: int = 4,
    progress: Progress | None = None,
) -> InstructExportResult:
    """Write ``records`` in ``fmt`` (one file set per non-empty split) into ``out_dir``."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    sides = split_slides(list(records), val=val, test=test, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, kept = write_images(records, out_dir, workers=workers, progress=progress)
    result = InstructExportResult(
        out_dir=out_dir,
        counts={s: len(sides[s]) for s in SPLITS},
        slides={s: sorted({r.slide_path for r in sides[s]}) for s in SPLITS},
        images_written=written,
        images_kept=kept,
    )

    def jpeg(r: InstructRecord) -> bytes:
        return (out_dir / _image_name(r)).read_bytes()

    for split in SPLITS:
        if not sides[split]:
            continue
        for name, data in _files(fmt, split, sides[split], jpeg).items():
            write_atomic(out_dir / name, data)
            result.files.append(name)
    summary = {"format": fmt, "seed": seed, "val": val, "test": test,
               "counts": result.counts, "slides": result.slides}  # fmt: skip
    write_atomic(out_dir / SPLIT_FILE, json.dumps(summary, sort_keys=True, indent=1).encode())
    return result
