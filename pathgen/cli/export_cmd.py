"""``pathgen export``: WebDataset shards, revise-training pairs, caption tables, instruct data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from pathgen.cli.context import run_async, state
from pathgen.errors import ConfigError

if TYPE_CHECKING:
    from pathgen.settings import ModelSettings, Settings

export_app = typer.Typer(help="Export datasets from a run.", no_args_is_help=True)
console = Console()


def run_model_settings(run_config: dict[str, Any], fallback: ModelSettings) -> ModelSettings:
    """The CLIP model a run used: its config snapshot's ``model`` section, else ``fallback``."""
    from pathgen.settings import ModelSettings

    section = run_config.get("model") if isinstance(run_config, dict) else None
    if not section:
        return fallback
    try:
        return ModelSettings.model_validate(section)
    except ValueError as exc:
        raise ConfigError(f"the run's stored model settings are invalid: {exc}") from None


async def write_run_webdataset(
    settings: Settings, run_id: str, out: Path, options: Any, reviewed: bool
):  # noqa: ANN201 - WebDatasetResult, imported lazily
    """Export RUN's samples as WebDataset shards into ``out`` (resumable)."""
    import asyncio

    from pathgen.export import load_samples, write_webdataset
    from pathgen.export.samples import get_run
    from pathgen.store.engine import make_engine, read_scope

    engine = make_engine(settings.database.url, create=False)
    try:
        async with read_scope(engine) as session:
            run = await get_run(session, run_id)
            config = dict(run.config or {})
            samples = await load_samples(session, run_id, only_reviewed=reviewed)
    finally:
        await engine.dispose()
    clip = None
    if options.min_clip_score is not None:
        from pathgen.embed import load_clip

        clip = await asyncio.to_thread(load_clip, run_model_settings(config, settings.model))

    def progress(name: str, done: int, total: int) -> None:
        console.print(f"  shard {name} ({done}/{total})", highlight=False, soft_wrap=True)

    return await asyncio.to_thread(
        write_webdataset, samples, out, options, clip=clip, progress=progress
    )


@export_app.command("webdataset")
def webdataset(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id."),
    out: Path = typer.Option(..., "--out", help="Output folder for the shards."),
    shard_size: int = typer.Option(1000, "--shard-size", min=1, help="Samples per shard."),
    min_clip_score: float | None = typer.Option(
        None, "--min-clip-score", help="Drop samples whose CLIP image-caption cosine is lower."
    ),
    only_reviewed: bool = typer.Option(
        False, "--only-reviewed", help="Export only tiles a curator accepted or edited."
    ),
    workers: int = typer.Option(4, "--workers", min=1, help="Tile reader threads."),
) -> None:
    """Write RUN's final captions and tiles as WebDataset shards (open_clip-ready)."""
    from pathgen.export import WebDatasetOptions

    settings = state(ctx).settings
    options = WebDatasetOptions(
        shard_size=shard_size, min_clip_score=min_clip_score, workers=workers
    )
    result = run_async(lambda: write_run_webdataset(settings, run, out, options, only_reviewed))
    kept = f", {len(result.kept_shards)} kept from an earlier run" if result.kept_shards else ""
    dropped = (
        f", {result.below_min_score} below --min-clip-score" if min_clip_score is not None else ""
    )
    console.print(
        f"exported {result.samples} samples in {len(result.sizes)} shards to {out}{kept}{dropped}",
        highlight=False,
        soft_wrap=True,
    )
    if not result.samples and only_reviewed:
        console.print(
            f"note: no caption of run {run} is accepted or edited yet: review tiles in "
            "`pathgen serve`, or export without --only-reviewed",
            markup=False,
        )


async def _pairs(settings: Settings, run_id: str, out: Path, fmt: str, images: bool, tpl: str):
    import asyncio

    from pathgen.export import load_pairs, write_pairs
    from pathgen.store.engine import make_engine, read_scope

    engine = make_engine(settings.database.url, create=False)
    try:
        async with read_scope(engine) as session:
            pairs = await load_pairs(session, run_id)
    finally:
        await engine.dispose()
    return await asyncio.to_thread(
        write_pairs, pairs, out, fmt=fmt, with_images=images, template=tpl
    )


@export_app.command("revise-pairs")
def revise_pairs(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id."),
    out: Path = typer.Option(..., "--out", help="Output JSONL file."),
    fmt: str = typer.Option("openai", "--format", help="openai (chat fine-tuning) or llava."),
    with_images: bool = typer.Option(
        False, "--with-images", help="openai format: put the tile in the user turn as a data URL."
    ),
    template: str = typer.Option("revise_v1", "--template", help="Revise prompt template."),
) -> None:
    """Write (degraded, original) description pairs of RUN for training a reviser."""
    from pathgen.export.pairs import FORMATS

    _check_format(fmt, FORMATS)
    settings = state(ctx).settings
    count = run_async(lambda: _pairs(settings, run, out, fmt, with_images, template))
    console.print(
        f"exported {count} revise pairs to {out} ({fmt})", highlight=False, soft_wrap=True
    )


async def _captions(settings: Settings, run_id: str, out: Path) -> int:
    from pathgen.export import export_captions
    from pathgen.store.engine import make_engine, read_scope

    engine = make_engine(settings.database.url, create=False)
    try:
        async with read_scope(engine) as session:
            return await export_captions(session, run_id, out)
    finally:
        await engine.dispose()


@export_app.command("captions")
def captions(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id."),
    out: Path = typer.Option(..., "--out", help="Output Parquet file."),
) -> None:
    """Write every caption revision of RUN to a Parquet table."""
    settings = state(ctx).settings
    count = run_async(lambda: _captions(settings, run, out))
    console.print(f"exported {count} revisions to {out}", highlight=False, soft_wrap=True)


async def _stored_model(settings: Settings, run_id: str) -> ModelSettings:
    from pathgen.runs.registry import run_settings
    from pathgen.store.engine import make_engine

    engine = make_engine(settings.database.url, create=False)
    try:
        return (await run_settings(engine, run_id)).model
    finally:
        await engine.dispose()


@export_app.command("open-clip-model")
def open_clip_model(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Folder to write (open_clip local-dir: layout)."),
    run: str | None = typer.Option(
        None, "--run", help="Export the model RUN used (default: the config's \\[model])."
    ),
) -> None:
    """Write the CLIP model as an open_clip `local-dir:` folder (config + weights).

    open_clip_train then trains it with `--model local-dir:OUT`, whatever its architecture.
    """
    from pathgen.embed import load_clip
    from pathgen.export.open_clip_model import WEIGHTS_FILE, write_open_clip_model

    settings = state(ctx).settings
    model = run_async(lambda: _stored_model(settings, run)) if run else settings.model
    clip = load_clip(model.model_copy(update={"device": "cpu"}))
    folder = write_open_clip_model(clip.model, clip.name, out)
    console.print(
        f"wrote {folder} ({clip.fingerprint}); train it with "
        f"`python -m open_clip_train.main --model local-dir:{folder} ...`; its weights "
        f"{folder / WEIGHTS_FILE} are a [model] pretrained for pathgen",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


async def _instruct(settings: Settings, run_id: str, out: Path, reviewed: bool, **options: Any):  # noqa: ANN202
    import asyncio

    from pathgen.export.instruct import load_instruct_records
    from pathgen.export.instruct_formats import write_instruct
    from pathgen.store.engine import make_engine, read_scope

    engine = make_engine(settings.database.url, create=False)
    try:
        async with read_scope(engine) as session:
            records = await load_instruct_records(session, run_id, only_reviewed=reviewed)
    finally:
        await engine.dispose()
    return await asyncio.to_thread(write_instruct, records, out, **options)


@export_app.command("instruct")
def instruct(
    ctx: typer.Context,
    run: str = typer.Argument(..., help="Run id."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    fmt: str = typer.Option("llava", "--format", help="llava, llava-questions, openai or parquet."),
    val: float = typer.Option(0.1, "--val", min=0, max=1, help="Share of slides for val."),
    test: float = typer.Option(0.1, "--test", min=0, max=1, help="Share of slides for test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the slide split."),
    only_reviewed: bool = typer.Option(
        False, "--only-reviewed", help="Export only items a curator accepted or edited."
    ),
    workers: int = typer.Option(4, "--workers", min=1, help="Tile reader threads."),
) -> None:
    """Write RUN's verified instruct items (VQA / instruction tuning), split by slide."""
    from pathgen.export.instruct_formats import FORMATS

    _check_format(fmt, FORMATS)
    settings = state(ctx).settings
    result = run_async(
        lambda: _instruct(
            settings, run, out, only_reviewed, fmt=fmt, val=val, test=test, seed=seed,
            workers=workers,
        )
    )  # fmt: skip
    counts = ", ".join(f"{s} {n}" for s, n in result.counts.items())
    kept = f" ({result.images_kept} kept from an earlier export)" if result.images_kept else ""
    console.print(
        f"exported {sum(result.counts.values())} items ({counts}) as {fmt} to {out}; "
        f"{result.images_written} images written{kept}",
        highlight=False,
        soft_wrap=True,
    )
    if not any(result.counts.values()):
        why = (
            "no curator has accepted or edited an item yet (`pathgen serve`)"
            if only_reviewed
            else "run the instruct stage: set [captioning.instruct] enabled = true in the "
            "config, then `pathgen run CONFIG --redo instruct --force`"
        )
        console.print(f"note: no verified instruct items in run {run}: {why}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


def _check_format(fmt: str, formats: tuple[str, ...]) -> None:
    """A usage error (exit 2) for a ``--format`` the exporter does not write."""
    if fmt not in formats:
        from pathgen.errors import ConfigError

        raise ConfigError(
            f"unknown format {fmt!r}: use one of {', '.join(formats)}", key="--format"
        )
