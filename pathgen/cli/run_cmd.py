"""``pathgen run``, ``worker``, ``tile``, ``status`` and ``retry``: operating runs."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pathgen.cli.context import run_async, state
from pathgen.errors import ConfigError
from pathgen.runs import queue, registry
from pathgen.runs.manifest import SlideEntry, discover, read_manifest
from pathgen.runs.progress import render, snapshot
from pathgen.runs.report import parked_items, slide_counts, slide_problems, slide_readers
from pathgen.settings import Settings, load_settings
from pathgen.store.engine import make_engine
from pathgen.types import PIPELINE_STAGES

console = Console()
LOG_FORMATS = ("rich", "json")


def _stages(value: str | None) -> list[str]:
    if not value:
        return list(PIPELINE_STAGES)
    stages = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in stages if s not in PIPELINE_STAGES]
    if unknown:
        raise ConfigError(
            f"unknown stage(s) {unknown}; stages are {', '.join(PIPELINE_STAGES)}", key="--stages"
        )
    return stages


def _entries(settings: Settings, manifest: Path | None, slides: list[str]) -> list[SlideEntry]:
    entries: list[SlideEntry] = []
    source = manifest or (Path(settings.run.manifest) if settings.run.manifest else None)
    if source is not None:
        entries += read_manifest(source)
    entries += discover(slides)
    return entries


def _print_summary(run_id: str, settings: Settings, log_format: str) -> None:
    async def gather():  # noqa: ANN202
        engine = make_engine(settings.database.url)
        try:
            return (
                await snapshot(engine, run_id),
                await slide_problems(engine, run_id),
                await parked_items(engine, run_id, limit=20),
                await slide_readers(engine, run_id),
            )
        finally:
            await engine.dispose()

    progress, problems, parked, readers = run_async(gather)
    if log_format == "json":
        print(
            json.dumps(
                {
                    "event": "summary",
                    **progress.to_json(),
                    "slide_problems": [asdict(p) for p in problems],
                    "slide_readers": readers,
                    "parked": [asdict(p) for p in parked],
                }
            )
        )
        return
    console.print(render(progress))
    if readers:
        console.print(
            "slides tiled, by reader: " + ", ".join(f"{r} {n}" for r, n in readers.items())
        )
    if problems:
        table = Table(title="slides with problems")
        for col in ("slide", "reader", "reason", "message"):
            table.add_column(col)
        for p in problems:
            table.add_row(Path(p.path).name, p.reader or "", p.reason or "", p.error or "")
        console.print(table)
    if parked:
        console.print(
            f"[yellow]{len(parked)} item(s) parked as failed[/yellow] "
            f"(`pathgen retry {run_id} --stage STAGE` requeues them):"
        )
        for p in parked[:10]:
            console.print(f"  {p.stage} {p.key}: {p.error}")


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        ctx: typer.Context,
        config: Path | None = typer.Argument(
            None, help="pathgen.toml (default: --config / ./pathgen.toml)"
        ),
        manifest: Path | None = typer.Option(
            None, help="Slide manifest CSV (overrides run.manifest)."
        ),
        run_id: str | None = typer.Option(
            None,
            "--run-id",
            help="Run id (default: run.name or derived from the config, so a rerun resumes).",
        ),
        stages: str | None = typer.Option(
            None, help="Comma-separated stages to run (default: all)."
        ),
        log_format: str = typer.Option("rich", help="rich (live table) or json (lines, for logs)."),
        grace_s: float = typer.Option(
            30.0, help="Seconds in-flight items get to finish after Ctrl-C."
        ),
        redo: str | None = typer.Option(
            None,
            help="Caption stage(s) to run again, with the stages after them (e.g. "
            "after changing a model or prompt); same model+prompt outputs are reused.",
        ),
        force: bool = typer.Option(False, help="With --redo: always make new revisions."),
    ) -> None:
        """Run (or resume) the whole pipeline for the manifest in the config."""
        from workers.pipeline import main as run_main

        if log_format not in LOG_FORMATS:
            raise ConfigError(f"--log-format must be one of {LOG_FORMATS}", key="--log-format")
        settings = load_settings(config) if config else state(ctx).settings
        entries = _entries(settings, manifest, [])
        if not entries:
            raise ConfigError(
                "no slides: set run.manifest in the config or pass --manifest", key="run.manifest"
            )
        if force and not redo:
            raise ConfigError("--force only applies with --redo STAGE", key="--force")
        summary = run_main(
            settings,
            entries,
            run_id=run_id,
            stages=_stages(stages),
            log_format=log_format,
            grace_s=grace_s,
            redo=_stages(redo) if redo else (),
            force=force,
        )
        _print_summary(summary.run_id, settings, log_format)
        if summary.interrupted:
            console.print(f"run {summary.run_id} interrupted: run the same command to resume")
            raise typer.Exit(130)
        console.print(
            f"run [bold]{summary.run_id}[/bold] {summary.progress.status}; "
            f"database: {settings.database.url}"
        )

    @app.command("tile")
    def tile(
        ctx: typer.Context,
        slides: list[str] = typer.Argument(None, help="Slide files or folders."),
        manifest: Path | None = typer.Option(
            None, help="Manifest CSV: path[,mpp,report,label,organ]."
        ),
        mpp: float | None = typer.Option(None, help="Target µm/px (default tiling.mpp, 0.5)."),
        tile_size: int | None = typer.Option(None, help="Tile side in pixels at the target µm/px."),
        assume_mpp: float | None = typer.Option(None, help="µm/px for slides that record none."),
        preview_dir: Path | None = typer.Option(None, help="Write a preview PNG per slide here."),
        run_id: str | None = typer.Option(None, "--run-id"),
        log_format: str = typer.Option("rich"),
    ) -> None:
        """Tile slides (the tile stage alone): find tissue, cut tiles, store them."""
        from workers.pipeline import main as run_main

        settings = state(ctx).settings
        overrides = {
            k: v
            for k, v in {
                "mpp": mpp,
                "tile_size": tile_size,
                "assume_mpp": assume_mpp,
                "preview_dir": str(preview_dir) if preview_dir else None,
            }.items()
            if v is not None
        }
        if overrides:
            tiling = settings.tiling.model_validate({**settings.tiling.model_dump(), **overrides})
            settings = settings.model_copy(update={"tiling": tiling})
        entries = _entries(settings, manifest, slides or [])
        if not entries:
            raise ConfigError("no slides given: pass files, folders or --manifest", key="SLIDES")
        summary = run_main(
            settings,
            entries,
            run_id=run_id or f"tile-{registry.default_run_id(settings)}",
            stages=["tile"],
            log_format=log_format,
        )

        async def counts():  # noqa: ANN202
            engine = make_engine(settings.database.url)
            try:
                return (
                    await slide_counts(engine, summary.run_id),
                    await slide_problems(engine, summary.run_id),
                    await slide_readers(engine, summary.run_id),
                )
            finally:
                await engine.dispose()

        by_status, problems, readers = run_async(counts)
        console.print(
            f"slides tiled: {by_status.get('tiled', 0)}, failed: {by_status.get('failed', 0)}"
        )
        if readers:
            console.print("  by reader: " + ", ".join(f"{r} {n}" for r, n in readers.items()))
        for p in problems:
            via = f" ({p.reader})" if p.reader else ""
            console.print(f"  [red]{p.reason}[/red] {p.path}{via}: {p.error}")

    @app.command("worker")
    def worker(
        ctx: typer.Context,
        stages: str | None = typer.Option(None, help="Comma-separated stages this worker takes."),
        concurrency: int | None = typer.Option(None, help="Max in-flight items per stage."),
        run_id: str | None = typer.Option(None, "--run", help="Only work on this run."),
        exit_when_idle: bool = typer.Option(False, help="Exit when the run has nothing left."),
        grace_s: float = typer.Option(30.0),
    ) -> None:
        """Claim work from the database (start more on other machines to scale out)."""
        from workers.worker import main as worker_main

        if exit_when_idle and not run_id:
            raise ConfigError("--exit-when-idle needs --run RUN", key="--exit-when-idle")
        stats = worker_main(
            state(ctx).settings,
            stages=_stages(stages),
            concurrency=concurrency,
            run_id=run_id,
            exit_when_idle=exit_when_idle,
            grace_s=grace_s,
        )
        console.print(
            f"worker done: {stats.done} done, {stats.failed} parked, "
            f"{stats.retried} retried, {stats.released} released"
        )

    @app.command("status")
    def status(
        ctx: typer.Context,
        run_id: str | None = typer.Argument(None, help="Run id (default: the latest run)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Per-stage counts, tokens and cost of a run (from any machine)."""
        settings = state(ctx).settings

        async def resolve():  # noqa: ANN202
            engine = make_engine(settings.database.url)
            try:
                rid = run_id or await registry.latest_run_id(engine)
                return rid
            finally:
                await engine.dispose()

        rid = run_async(resolve)
        if rid is None:
            raise ConfigError("no runs in this database yet", key="RUN")
        _print_summary(rid, settings, "json" if as_json else "rich")

    @app.command("retry")
    def retry(
        ctx: typer.Context,
        run_id: str = typer.Argument(..., help="Run id."),
        stage: str | None = typer.Option(None, help="Only this stage (default: every stage)."),
    ) -> None:
        """Requeue a run's parked (failed) items with fresh attempts."""
        if stage is not None:
            _stages(stage)
        settings = state(ctx).settings

        async def go() -> int:
            engine = make_engine(settings.database.url)
            try:
                return await queue.retry_failed(engine, run_id, stage)
            finally:
                await engine.dispose()

        n = run_async(go)
        console.print(f"requeued {n} item(s); run `pathgen run` or start workers to process them")
