"""``pathgen search-tiles`` and ``pathgen zeroshot``: CLIP retrieval over a run's tiles."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer

from pathgen.cli.context import console, print_wide, run_async, state


async def _tile_rows(engine: Any, tile_ids: list[int]) -> dict[int, tuple[str, int, int, int]]:
    from sqlalchemy import select

    from pathgen.store.engine import read_scope
    from pathgen.store.models import Slide, Tile

    out: dict[int, tuple[str, int, int, int]] = {}
    async with read_scope(engine) as s:
        for start in range(0, len(tile_ids), 2000):
            chunk = tile_ids[start : start + 2000]
            rows = await s.execute(
                select(Tile.id, Slide.path, Tile.x, Tile.y, Tile.size)
                .join(Slide, Slide.id == Tile.slide_id)
                .where(Tile.id.in_(chunk))
            )
            out.update({r[0]: (r[1], r[2], r[3], r[4]) for r in rows})
    return out


async def _clip_for_run(engine: Any, run_id: str) -> Any:
    import asyncio

    from pathgen.embed import load_clip
    from pathgen.runs.registry import run_settings

    settings = await run_settings(engine, run_id)
    return await asyncio.to_thread(load_clip, settings.model)


async def _search(url: str, run_id: str, text: str | None, like: int | None, top: int) -> Any:
    from pathgen.curation.dense import search_run
    from pathgen.store.engine import make_engine

    engine = make_engine(url, create=False)
    try:
        clip = await _clip_for_run(engine, run_id)
        hits = await search_run(engine, clip, run_id, text=text, like_tile=like, top=top)
        return hits, await _tile_rows(engine, [t for t, _ in hits])
    finally:
        await engine.dispose()


def search_tiles(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id."),
    text: str | None = typer.Option(None, "--text", help="Find tiles matching this text."),
    like: int | None = typer.Option(None, "--like", help="Find tiles similar to this tile id."),
    top: int = typer.Option(50, help="How many tiles."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Exact dense retrieval over the run's stored tile embeddings (CLIP)."""
    from rich.table import Table

    from pathgen.errors import ConfigError

    if (text is None) == (like is None):
        raise ConfigError("give exactly one of --text or --like", key="--text/--like")
    url = state(ctx).settings.database.url
    hits, rows = run_async(lambda: _search(url, run_id, text, like, top))
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "tile_id": t,
                        "score": round(s, 6),
                        "slide": rows[t][0],
                        "x": rows[t][1],
                        "y": rows[t][2],
                        "size": rows[t][3],
                    }
                    for t, s in hits
                ]
            )
        )
        return
    table = Table(title=f"tiles like {text!r}" if text else f"tiles like tile {like}")
    for col in ("tile", "score", "slide", "x", "y"):
        table.add_column(col)
    for t, s in hits:
        path, x, y, _ = rows[t]
        table.add_row(str(t), f"{s:.4f}", Path(path).name, str(x), str(y))
    print_wide(console(), table)


async def _zeroshot(url: str, run_id: str, names: list[str], templates: list[str]) -> Any:
    import asyncio

    from pathgen.curation.dense import zeroshot_run
    from pathgen.embed import zeroshot_classifier
    from pathgen.store.engine import make_engine

    engine = make_engine(url, create=False)
    try:
        clip = await _clip_for_run(engine, run_id)
        class_emb = await asyncio.to_thread(zeroshot_classifier, clip, names, templates)
        preds = list(await zeroshot_run(engine, clip, run_id, class_emb))
        return preds, await _tile_rows(engine, [t for t, _, _ in preds])
    finally:
        await engine.dispose()


def zeroshot(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id."),
    classes: str = typer.Option(..., help='Comma-separated classes, e.g. "tumour,stroma".'),
    template: list[str] = typer.Option(
        None, help="Prompt template(s) with {} (repeatable); default: an ensemble."
    ),
    out: Path = typer.Option(Path("zeroshot.csv"), help="CSV to write."),
) -> None:
    """Zero-shot classification of every embedded tile of a run (per-class prompt ensembles)."""
    from pathgen.embed import DEFAULT_TEMPLATES
    from pathgen.errors import ConfigError

    names = [c.strip() for c in classes.split(",") if c.strip()]
    if len(names) < 2:
        raise ConfigError("give at least two classes", key="--classes")
    templates = list(template) if template else list(DEFAULT_TEMPLATES)
    if any("{}" not in t for t in templates):
        raise ConfigError("every --template needs a {} placeholder", key="--template")
    url = state(ctx).settings.database.url
    preds, rows = run_async(lambda: _zeroshot(url, run_id, names, templates))
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(names, 0)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["tile_id", "slide", "x", "y", "size", "prediction", *[f"p_{n}" for n in names]]
        )
        for tile_id, pred, probs in preds:
            path, x, y, size = rows[tile_id]
            counts[names[pred]] += 1
            writer.writerow([tile_id, path, x, y, size, names[pred], *[f"{p:.5f}" for p in probs]])
    shown = console()
    shown.print(f"{len(preds)} tiles classified → {out}")
    for name, n in counts.items():
        shown.print(f"  {name}: {n}")


def register(app: typer.Typer) -> None:
    app.command("search-tiles")(search_tiles)
    app.command("zeroshot")(zeroshot)
