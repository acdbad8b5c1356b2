"""``pathgen eval`` (caption quality report of a run) and ``pathgen zeroshot-eval``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from pathgen.cli.context import run_async, state
from pathgen.errors import ConfigError

console = Console()


async def _load(url: str, run_id: str) -> Any:
    from pathgen.eval.gather import load_run_data
    from pathgen.store.engine import make_engine

    engine = make_engine(url, create=False)
    try:
        return await load_run_data(engine, run_id)
    finally:
        await engine.dispose()


async def _agreement(url: str, run_id: str) -> dict[str, Any]:
    from pathgen.eval.agreement import agreement
    from pathgen.store.engine import make_engine, read_scope

    engine = make_engine(url, create=False)
    try:
        async with read_scope(engine) as session:
            return await agreement(session, run_id)
    finally:
        await engine.dispose()


def _run_model_settings(config: dict[str, Any], run_id: str, device: str | None) -> Any:
    from pydantic import ValidationError

    from pathgen.settings import Settings

    try:
        settings = Settings.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"run {run_id!r} has a settings snapshot this pathgen cannot read: {first['msg']}",
            key=key,
        ) from None
    model = settings.model
    return model.model_copy(update={"device": device}) if device else model


def eval_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id to evaluate."),
    out: Path = typer.Option(..., "--out", "-o", help="Report directory (created)."),
    references: Path | None = typer.Option(
        None, "--references", help="CSV of reference captions: tile_id (or slide,x,y), text."
    ),
    text_model: str = typer.Option(
        "minilm",
        "--text-model",
        help="Text embedder for near-duplicates and reference similarity: minilm or clip.",
    ),
    device: str | None = typer.Option(None, "--device", help="Override the run's model device."),
    compare_selection: str | None = typer.Option(
        None,
        "--compare-selection",
        help="Also compare RUN's current selection with this one: RUN@N (round N of a "
        "re-selected run) or OTHER_RUN, on the slides both hold.",
    ),
) -> None:
    """Measure caption quality of RUN and write OUT/index.html and OUT/metrics.json.

    metrics.json's ``agreement`` holds the curators' agreement on the double-review
    sample (accept/reject Cohen's kappa, edit distance between two curators' edits).

    With --compare-selection, the report also compares two selections of the same slides
    (overlap, retrieval scores, cluster coverage, duplicate rate).
    """
    if text_model not in ("minilm", "clip"):
        raise ConfigError(f"--text-model must be 'minilm' or 'clip', not {text_model!r}")
    os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub from an evaluation
    url = state(ctx).settings.database.url
    data = run_async(lambda: _load(url, run_id))
    model_settings = _run_model_settings(data.config, run_id, device)

    from pathgen.embed.model import load_clip
    from pathgen.eval.evaluate import evaluate_run
    from pathgen.eval.references import read_references
    from pathgen.eval.report import write_eval_report
    from pathgen.eval.semantic import load_sentence_model

    refs = read_references(references, data.tiles) if references else None
    clip = load_clip(model_settings)
    sentence = load_sentence_model() if text_model == "minilm" else None
    metrics = evaluate_run(
        data,
        clip,
        references=refs,
        sentence=sentence,
        reader_threads=model_settings.reader_threads,
    )
    if compare_selection:
        metrics["selection"] = _compare(url, compare_selection, run_id, device)
    metrics["agreement"] = run_async(lambda: _agreement(url, run_id))
    index = write_eval_report(metrics, out)
    for name, group in metrics["groups"].items():
        console.print(
            f"{name}: {group['captions']} captions, CLIP score mean "
            f"{group['clip_score']['mean'] if group['clip_score']['mean'] is not None else '-'}",
            highlight=False,
        )
    rec = metrics["recovery"]["degraded"]
    console.print(
        f"recovery: {rec['edits_undone']}/{rec['edits_made']} planted edits undone", highlight=False
    )
    ins = metrics["instruct"]
    if ins["items"]:
        mix = ", ".join(f"{k} {v['items']}" for k, v in ins["by_kind"].items() if v["items"])
        yes = ins["yes_no"]["yes_share"]
        console.print(
            f"instruct: {ins['items']} items ({mix}); yes/no answers "
            f"{'-' if yes is None else f'{yes:.1%} yes'}; {ins['failed']} failed verification",
            highlight=False,
            soft_wrap=True,
        )
    _print_agreement(console, metrics["agreement"])
    console.print(f"report written to {index}", highlight=False)


def _compare(url: str, before: str, run_id: str, device: str | None) -> dict[str, Any]:
    """Selection ``before`` against RUN's current selection, scored by both their models."""
    from pathgen.embed.model import load_clip
    from pathgen.eval.selection import compare_selections, load_selections
    from pathgen.store.engine import make_engine

    async def load() -> Any:
        engine = make_engine(url, create=False)
        try:
            return await load_selections(engine, before, run_id)
        finally:
            await engine.dispose()

    data = run_async(load)
    clips: dict[str, Any] = {}
    for label, model in data.models.items():
        if label == "b" and model == data.models["a"]:
            continue  # one model made both selections
        clips[label] = load_clip(model.model_copy(update={"device": device}) if device else model)
    comparison = compare_selections(data, clips)
    overlap = comparison["overlap"]
    console.print(
        f"selection {comparison['a']['selection']} kept {comparison['a']['kept']}, "
        f"{comparison['b']['selection']} kept {comparison['b']['kept']}: {overlap['both']} in "
        f"both (Jaccard {overlap['jaccard']:.3f})",
        highlight=False,
    )
    return comparison


def zeroshot_command(
    source: Path | None = typer.Argument(
        None, metavar="[DIR]", help="Labelled tiles: DIR/<class>/*.png, or a CSV (image,label)."
    ),
    pairs: Path | None = typer.Option(
        None,
        "--pairs",
        help="Also measure image↔caption recall@1/5/10 on these pairs (an export folder, "
        "e.g. `pathgen train-clip`'s OUT/data/val).",
    ),
    model_name: str = typer.Option("ViT-B-16", "--model-name", help="open_clip model name."),
    pretrained: str = typer.Option(..., "--pretrained", help="Checkpoint path or open_clip tag."),
    config_json: Path | None = typer.Option(None, "--config-json", help="Model config JSON."),
    compare_pretrained: str | None = typer.Option(
        None, "--compare-pretrained", help="A second checkpoint to evaluate side by side."
    ),
    template: list[str] | None = typer.Option(
        None, "--template", help="Prompt template with {} for the class name (repeatable)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report directory (created)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
) -> None:
    """Zero-shot accuracy on labelled tiles and/or retrieval on pairs, checkpoints side by side."""
    from pathgen.eval.report import write_zeroshot_report
    from pathgen.eval.retrieval import retrieval_eval
    from pathgen.eval.zeroshot import load_labelled, zeroshot_eval
    from pathgen.settings import ModelSettings

    if source is None and pairs is None:
        raise ConfigError("give labelled tiles (DIR), --pairs EXPORT_DIR, or both", key="DIR")
    for tpl in template or []:
        if "{}" not in tpl:
            raise ConfigError(f"--template {tpl!r} needs a {{}} where the class name goes")
    data = load_labelled(source) if source is not None else None

    from pydantic import ValidationError

    def settings_for(ckpt: str) -> ModelSettings:
        try:
            return ModelSettings(
                name=model_name,
                pretrained=ckpt,
                config_json=str(config_json) if config_json else None,
                device=device,  # type: ignore[arg-type]
            )
        except ValidationError as exc:
            raise ConfigError(f"bad model option: {exc.errors()[0]['msg']}") from None

    checkpoints = {"base": settings_for(pretrained)}
    if compare_pretrained:
        checkpoints["compare"] = settings_for(compare_pretrained)
    metrics = zeroshot_eval(data, checkpoints, template or None) if data is not None else {}
    if pairs is not None:
        metrics["retrieval"] = retrieval_eval(pairs, checkpoints)
    index = write_zeroshot_report(metrics, out)
    for label, result in metrics.get("checkpoints", {}).items():
        console.print(
            f"{label} ({result['pretrained']}): accuracy {result['accuracy']:.3f}, balanced "
            f"{result['balanced_accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}",
            highlight=False,
        )
    for label, result in metrics.get("retrieval", {}).get("checkpoints", {}).items():
        console.print(
            f"{label} ({result['pretrained']}): image→text R@1 "
            f"{result['image_to_text']['r@1']:.3f}, text→image R@1 "
            f"{result['text_to_image']['r@1']:.3f} on {result['pairs']} pairs",
            highlight=False,
        )
    console.print(f"report written to {index}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("zeroshot-eval")(zeroshot_command)


def _print_agreement(console: Any, agree: dict[str, Any]) -> None:
    """The curators' agreement line, when some tiles were reviewed twice."""
    if not agree["double_reviewed"]:
        return
    kappa = agree["kappa"] if agree["kappa"] is not None else "-"
    dist = agree["edit_distance"]["mean"]
    console.print(
        f"agreement: {agree['double_reviewed']} tiles reviewed twice, accept/reject kappa "
        f"{kappa} over {agree['decision_pairs']}, edit distance mean "
        f"{dist if dist is not None else '-'} over {agree['edit_pairs']}",
        highlight=False,
    )
