"""``pathgen train-clip``: fine-tune the run's CLIP on its own pairs and measure it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pathgen.cli.context import console, run_async, state

if TYPE_CHECKING:
    from pathgen.settings import ModelSettings, Settings


async def _export_run(settings: Settings, run_id: str, out: Path, reviewed: bool) -> ModelSettings:
    """Export RUN into ``out`` (resumable) and return the model the run used."""
    from pathgen.cli.export_cmd import write_run_webdataset
    from pathgen.export import WebDatasetOptions
    from pathgen.runs.registry import run_settings
    from pathgen.store.engine import make_engine

    engine = make_engine(settings.database.url, create=False)
    try:
        model = (await run_settings(engine, run_id)).model
    finally:
        await engine.dispose()
    await write_run_webdataset(settings, run_id, out, WebDatasetOptions(), reviewed)
    return model


def _print_retrieval(retrieval: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"held-out retrieval ({retrieval['pairs']} pairs)")
    table.add_column("recall")
    labels = list(retrieval["checkpoints"])
    for label in labels:
        table.add_column(label, justify="right")
    for direction in ("image_to_text", "text_to_image"):
        for k in retrieval["ks"]:
            row = [retrieval["checkpoints"][label][direction][f"r@{k}"] for label in labels]
            table.add_row(f"{direction.replace('_to_', '→')} R@{k}", *(f"{v:.3f}" for v in row))
    console().print(table)


def train_clip_command(
    ctx: typer.Context,
    source: str = typer.Argument(
        ..., metavar="SOURCE", help="Run id, or a `pathgen export webdataset` folder."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Training folder (created; resumable)."),
    tune: str = typer.Option(
        "full", "--tune", help="full, lock-image, lock-text, lora-image, lora-text or lora-both."
    ),
    epochs: int = typer.Option(3, "--epochs", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(1e-5, "--lr", help="Peak learning rate (cosine schedule)."),
    wd: float = typer.Option(0.1, "--wd", help="Weight decay."),
    warmup: int = typer.Option(0, "--warmup", min=0, help="Warm-up steps."),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", help="Share of slides (per manifest label) held out."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the training."),
    lora_r: int = typer.Option(8, "--lora-r", min=1, help="LoRA rank."),
    lora_alpha: int = typer.Option(16, "--lora-alpha", min=1, help="LoRA scaling alpha."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cuda or cpu."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 autocast on GPU, fp32 on CPU), fp32, bf16, fp16."
    ),
    workers: int = typer.Option(0, "--workers", min=0, help="Data loader processes."),
    report_to: str = typer.Option(
        "", "--report-to", help="open_clip_train logging: tensorboard, wandb or all."
    ),
    wandb_project: str | None = typer.Option(None, "--wandb-project", help="W&B project name."),
    only_reviewed: bool = typer.Option(
        False, "--only-reviewed", help="Train on curator-accepted/edited pairs only (RUN source)."
    ),
) -> None:
    """Fine-tune the selection CLIP on pairs pathgen made, and compare it with the base.

    SOURCE is a run (exported into OUT/data/export; the run's own \\[model] is the base)
    or an export folder (the config's \\[model] is the base). Whole slides are held out for
    validation. Writes OUT/model/ (open_clip local-dir: folder; its .safetensors is the new
    \\[model] pretrained), OUT/eval/index.html and OUT/summary.json. Rerun to resume.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pathgen.errors import ConfigError
    from pathgen.export.open_clip_model import model_snippet
    from pathgen.train import TrainOptions, finetune

    opts = TrainOptions(
        tune=tune,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        wd=wd,
        warmup=warmup,
        seed=seed,
        val_fraction=val_fraction,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        device=device,
        precision=precision,
        workers=workers,
    )
    con = console()
    settings = state(ctx).settings
    folder = Path(source)
    if folder.is_dir():
        if only_reviewed:
            raise ConfigError("--only-reviewed applies to a RUN source", key="--only-reviewed")
        base = settings.model
    else:
        folder = out / "data" / "export"
        con.print(f"exporting run {source} to {folder}", highlight=False)
        base = run_async(lambda: _export_run(settings, source, folder, only_reviewed))
    con.print(
        f"base model: {base.name} ({base.pretrained or 'random init'})",
        highlight=False,
        soft_wrap=True,
    )
    with Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("step {task.fields[step]} loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=con,
        transient=True,
    ) as progress:
        task = progress.add_task("train", total=None, epoch="-", step="-", loss="-")

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            progress.update(
                task,
                completed=step,
                total=steps,
                epoch=epoch + 1,
                step=f"{step}/{steps}",
                loss=f"{loss:.4f}",
            )

        def on_epoch(summary: dict[str, Any]) -> None:
            val = summary["val"]
            progress.console.print(
                f"epoch {summary['epoch']}/{epochs}: train loss {summary['train_loss']:.4f}, "
                f"val loss {val.get('clip_val_loss', float('nan')):.4f}, val R@1 "
                f"i→t {val.get('image_to_text_R@1', float('nan')):.3f} "
                f"t→i {val.get('text_to_image_R@1', float('nan')):.3f} (open_clip_train)",
                highlight=False,
            )

        summary = finetune(
            folder,
            base,
            out,
            opts,
            report_to=report_to,
            wandb_project=wandb_project,
            on_stage=lambda text: progress.console.print(text, highlight=False),
            on_step=on_step,
            on_epoch=on_epoch,
        )
    params = summary["parameters"]
    con.print(
        f"trained {params['trainable']:,} of {params['total']:,} parameters on "
        f"{summary['device']} ({summary['precision']})",
        highlight=False,
    )
    _print_retrieval(summary["retrieval"])
    con.print(f"report:   {summary['report']}", highlight=False, soft_wrap=True)
    con.print(f"model:    local-dir:{summary['model_dir']}", highlight=False, soft_wrap=True)
    con.print(
        "use it for selection (then `pathgen run --redo select`):\n"
        + model_snippet(base.name, base.config_json, Path(summary["weights"])),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("train-clip")(train_clip_command)
