"""One ``pathgen train-clip``: split by slide, measure the base model, train, measure again.

``OUT/data/{train,val}`` hold the split shards, ``OUT/model/`` the trained model as an
open_clip ``local-dir:`` folder (its ``open_clip_model.safetensors`` is the new
``[model] pretrained``), ``OUT/eval/`` the side-by-side retrieval report of the base and
the trained model on the held-out slides, and ``OUT/summary.json`` everything measured.

Example::

    summary = finetune(Path("export"), run_model, Path("trained"), TrainOptions(epochs=3))
    summary["retrieval"]["checkpoints"]["trained"]["image_to_text"]["r@1"]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pathgen.export.shards import write_atomic
from pathgen.settings import ModelSettings
from pathgen.train.loop import EpochHook, StepHook, train_clip
from pathgen.train.options import TrainOptions
from pathgen.train.split import split_by_slide

SUMMARY_FILE = "summary.json"


def finetune(
    source: Path,
    base: ModelSettings,
    out_dir: Path,
    opts: TrainOptions,
    *,
    report_to: str = "",
    wandb_project: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_step: StepHook | None = None,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Train ``base`` on the export in ``source`` into ``out_dir``; returns the summary."""
    from pathgen.embed.model import load_clip
    from pathgen.eval.report import write_zeroshot_report
    from pathgen.eval.retrieval import compare, evaluate_pairs

    def stage(text: str) -> None:
        if on_stage is not None:
            on_stage(text)

    stage("splitting the export by slide")
    split = split_by_slide(source, out_dir / "data", val_fraction=opts.val_fraction, seed=opts.seed)
    base = base.model_copy(update={"device": opts.device})
    stage(f"measuring the base model on {split.val_samples} held-out pairs")
    before = {"pretrained": base.pretrained, **evaluate_pairs(load_clip(base), split.val_dir)}
    identity = {
        "base_model": before["fingerprint"],
        "train_slides": split.train_slides,
        "val_slides": split.val_slides,
        "options": opts.digest(),
    }
    stage(f"training on {split.train_samples} pairs ({opts.tune})")
    result = train_clip(
        base,
        split,
        out_dir,
        opts,
        identity=identity,
        report_to=report_to,
        wandb_project=wandb_project,
        on_step=on_step,
        on_epoch=on_epoch,
    )
    trained = base.model_copy(update={"pretrained": str(result.weights)})
    stage("measuring the trained model on the held-out pairs")
    after = {"pretrained": trained.pretrained, **evaluate_pairs(load_clip(trained), split.val_dir)}
    retrieval = compare(split.val_dir, {"base": before, "trained": after})
    report = write_zeroshot_report({"retrieval": retrieval}, out_dir / "eval")
    summary = {
        "source": str(source),
        "base_model": base.model_dump(mode="json"),
        "trained_model": trained.model_dump(mode="json"),
        "model_dir": str(result.model_dir),
        "weights": str(result.weights),
        "adapter_dir": str(result.adapter_dir) if result.adapter_dir else None,
        "options": asdict(opts),
        "device": result.device,
        "precision": result.precision,
        "parameters": {"trainable": result.trainable_params, "total": result.total_params},
        "trainable_names": result.trainable_names,
        "resumed_after_epoch": result.start_epoch,
        "split": {
            "train_slides": split.train_slides,
            "val_slides": split.val_slides,
            "train_samples": split.train_samples,
            "val_samples": split.val_samples,
        },
        "epochs": result.epochs,
        "retrieval": retrieval,
        "report": str(report),
    }
    write_atomic(out_dir / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
    return summary
