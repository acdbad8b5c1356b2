"""What ``run``, ``worker``, ``status`` and ``demo`` print at the end, and the exit code.

The summary is the run's progress table, the slides with problems, and per stage the
parked items with their first distinct errors; the last line says what happened and
what to do. The exit code comes from the run's outcome (:mod:`pathgen.exitcodes`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pathgen.cli.context import console, print_wide, run_async

if TYPE_CHECKING:
    from pathgen.runs.outcome import Outcome
    from pathgen.settings import Settings


async def _gather(url: str, run_id: str) -> tuple[Any, Any, Any, dict[str, int]]:
    from pathgen.runs.outcome import run_outcome
    from pathgen.runs.progress import snapshot
    from pathgen.runs.report import slide_problems, slide_readers
    from pathgen.store.engine import make_engine
    from pathgen.types import PIPELINE_STAGES

    engine = make_engine(url)
    try:
        progress = await snapshot(engine, run_id)
        stages = [s.stage for s in progress.stages if s.stage in PIPELINE_STAGES]
        everything = await run_outcome(engine, run_id, stages, interrupted=False)
        problems = await slide_problems(engine, run_id)
        return progress, problems, everything, await slide_readers(engine, run_id)
    finally:
        await engine.dispose()


def print_summary(
    run_id: str,
    settings: Settings,
    log_format: str,
    *,
    outcome: Outcome | None = None,
    notes: list[str] | tuple[str, ...] = (),
) -> None:
    """Print the run's summary; ``outcome`` (of a process that just ended) adds the last
    line and the exit code to the JSON."""
    from rich.markup import escape
    from rich.table import Table

    from pathgen.runs.progress import render

    progress, problems, everything, readers = run_async(
        lambda: _gather(settings.database.url, run_id)
    )
    if log_format == "json":
        data: dict[str, Any] = {
            "event": "summary",
            **progress.to_json(),
            "slide_problems": [asdict(p) for p in problems],
            "slide_readers": readers,
            "parked": [
                {"stage": s.stage, "count": s.parked, "errors": [list(e) for e in s.errors]}
                for s in everything.stages
                if s.parked
            ],
            "notes": list(notes),
        }
        if outcome is not None:
            data.update(exit_code=int(outcome.code), outcome=outcome.status)
            data["message"] = outcome.last_line()
        print(json.dumps(data))
        return
    out = console()
    print_wide(out, render(progress))
    if readers:
        out.print("slides tiled, by reader: " + ", ".join(f"{r} {n}" for r, n in readers.items()))
    if problems:
        table = Table(title="slides with problems")
        for col in ("slide", "reader", "reason", "message"):
            table.add_column(col)
        for p in problems:
            cells = (Path(p.path).name, p.reader or "", p.reason or "", p.error or "")
            table.add_row(*map(escape, cells))
        print_wide(out, table)
    for note in notes:
        out.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    lines = outcome.lines() if outcome is not None else everything.lines(unfinished=False)
    if lines:
        out.print(
            f"[yellow]items not done[/yellow] (`pathgen retry {escape(run_id)}` requeues parked "
            "ones):"
        )
        for line in lines:
            out.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if outcome is not None:
        style = "green" if outcome.code == 0 else "yellow"
        last = escape(outcome.last_line())
        out.print(f"[{style}]{last}[/{style}]", highlight=False, soft_wrap=True)


def exit_with(outcome: Outcome | None) -> None:
    """End the command with the outcome's exit code (0 when there is none)."""
    if outcome is not None and outcome.code:
        raise typer.Exit(int(outcome.code))
