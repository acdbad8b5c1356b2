"""Fine-tune a run's CLIP with open_clip_train's own training code.

The step loop, data pipeline, loss, learning-rate schedule and validation are
open_clip_train's (``train_one_epoch``, ``evaluate``, ``get_data``, ``create_loss``,
``cosine_lr``, its ``parse_args`` defaults and its ``--report-to`` TensorBoard / W&B
logging). pathgen adds what ``open_clip_train.main`` cannot do: start from the run's own
model (including random-init demo models and configs of the user's own), freeze a tower or
wrap it in LoRA adapters before the optimizer is made, resume from the last finished epoch
of the output folder, and write the result as an open_clip ``local-dir:`` folder whose
weights file is a ``[model] pretrained`` for pathgen.

Example::

    result = train_clip(run_model, split, Path("trained"), TrainOptions(epochs=3))
    result.weights       # trained/model/open_clip_model.safetensors
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathgen.errors import TrainError
from pathgen.export.open_clip_model import WEIGHTS_FILE, write_open_clip_model
from pathgen.settings import ModelSettings
from pathgen.train.lora import add_lora, count_parameters, merge_lora, trainable_names
from pathgen.train.options import TrainOptions, pick_device, precision_for
from pathgen.train.split import Split
from pathgen.train.state import TrainState, load_checkpoint, save_checkpoint

log = logging.getLogger("pathgen.train")

#: ``on_step(epoch, step, steps_per_epoch, loss)`` and ``on_epoch(summary)`` callbacks.
StepHook = Callable[[int, int, int, float], None]
EpochHook = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    out_dir: Path
    model_dir: Path
    weights: Path
    adapter_dir: Path | None
    device: str
    precision: str
    trainable_params: int
    total_params: int
    start_epoch: int
    epochs: list[dict[str, Any]] = field(default_factory=list)
    trainable_names: list[str] = field(default_factory=list)


class _TrackedLoss:
    """open_clip's loss, recording each step's total for progress and the epoch mean."""

    def __init__(self, inner: Any, on_step: StepHook | None) -> None:
        self.inner = inner
        self.on_step = on_step
        self.epoch = 0
        self.steps_per_epoch = 0
        self.values: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        losses = self.inner(*args, **kwargs)
        total = sum(losses.values()) if isinstance(losses, dict) else losses
        self.values.append(float(total.detach()))
        if self.on_step is not None:
            self.on_step(self.epoch, len(self.values), self.steps_per_epoch, self.values[-1])
        return losses


def _args(
    split: Split,
    out_dir: Path,
    opts: TrainOptions,
    *,
    device: str,
    precision: str,
    model_name: str,
    report_to: str,
    wandb_project: str | None,
) -> Any:
    """open_clip_train's argument namespace, parsed by its own ``parse_args``."""
    from open_clip_train.distributed import init_distributed_device
    from open_clip_train.params import parse_args

    argv = [
        "--train-data", split.shards("train"),
        "--val-data", split.shards("val"),
        "--val-num-samples", str(split.val_samples),
        "--dataset-type", "webdataset",
        "--batch-size", str(opts.batch_size),
        "--epochs", str(opts.epochs),
        "--lr", str(opts.lr),
        "--wd", str(opts.wd),
        "--warmup", str(opts.warmup),
        "--workers", str(opts.workers),
        "--precision", precision,
        "--seed", str(opts.seed),
        "--device", device,
        "--logs", str(out_dir / "logs"),
        "--name", "pathgen",
        "--model", model_name,
        "--log-every-n-steps", "1",
        "--val-frequency", "1",
    ]  # fmt: skip
    if report_to:
        argv += ["--report-to", report_to]
    if wandb_project:
        argv += ["--wandb-project-name", wandb_project]
    args = parse_args(argv)
    init_distributed_device(args)
    args.distill = False
    args.wandb = "wandb" in args.report_to or "all" in args.report_to
    args.tensorboard = "tensorboard" in args.report_to or "all" in args.report_to
    base = out_dir / "logs" / args.name
    args.checkpoint_path = str(base / "checkpoints")
    args.tensorboard_path = str(base / "tensorboard") if args.tensorboard else ""
    args.save_logs = True
    for folder in (args.checkpoint_path, args.tensorboard_path):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    return args


def _optimizer(model: Any, args: Any) -> Any:
    """AdamW over the trainable parameters, no weight decay on gains and biases (as main)."""
    import torch

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def exclude(n: str, p: Any) -> bool:
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n

    return torch.optim.AdamW(
        [
            {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": args.wd},
        ],
        lr=args.lr,
        betas=(args.beta1, args.beta2),
        eps=args.eps,
    )


def _prepare_model(model: Any, opts: TrainOptions) -> Any:
    """Freeze a tower or add LoRA adapters as ``opts.tune`` asks."""
    if opts.tune == "lock-image":
        model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=False)
    elif opts.tune == "lock-text":
        model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    elif opts.lora_tower is not None:
        return add_lora(
            model, opts.lora_tower, r=opts.lora_r, alpha=opts.lora_alpha, dropout=opts.lora_dropout
        )
    return model


def _loggers(args: Any, resumed: bool) -> Any:
    """open_clip_train's TensorBoard writer and W&B run, when ``--report-to`` asks."""
    writer = None
    if args.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrainError("--report-to tensorboard needs `pip install tensorboard`") from None
        writer = SummaryWriter(args.tensorboard_path)
    if args.wandb:
        try:
            import wandb
        except ImportError:
            raise TrainError("--report-to wandb needs `pip install wandb`") from None
        wandb.init(
            project=args.wandb_project_name,
            name=args.name,
            id=args.name,
            resume="allow" if resumed else None,
            config=vars(args),
        )
    return writer


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[None]:
    """open_clip_train's INFO lines (it logs through the root logger) go to ``path``."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    level = root.level
    quiet = {h: h.level for h in root.handlers if h.level < logging.WARNING}
    for other in quiet:  # the console keeps showing warnings only
        other.setLevel(logging.WARNING)
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for other, previous in quiet.items():
            other.setLevel(previous)
        handler.close()


def train_clip(
    base: ModelSettings,
    split: Split,
    out_dir: Path,
    opts: TrainOptions,
    *,
    identity: dict[str, Any],
    report_to: str = "",
    wandb_project: str | None = None,
    on_step: StepHook | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train ``base`` on ``split`` into ``out_dir`` (see the module docstring).

    ``identity`` names what is trained (base model, data, options); a folder holding
    another training raises :class:`TrainError`. open_clip_train's log is ``OUT/train.log``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with _log_file(out_dir / "train.log"):
        return _train(
            base, split, out_dir, opts, identity, report_to, wandb_project, on_step, on_epoch
        )


def _train(
    base: ModelSettings,
    split: Split,
    out_dir: Path,
    opts: TrainOptions,
    identity: dict[str, Any],
    report_to: str,
    wandb_project: str | None,
    on_step: StepHook | None,
    on_epoch: EpochHook | None,
) -> TrainResult:
    import torch
    from open_clip import create_loss
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from open_clip_train.data import get_data
    from open_clip_train.main import random_seed
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import evaluate, train_one_epoch

    from pathgen.embed.model import load_clip

    state = TrainState.load(out_dir)
    state.check(identity, out_dir)
    device = pick_device(opts.device, cuda_available=torch.cuda.is_available())
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    precision = precision_for(device, opts.precision, bf16_supported=bf16)
    if split.train_samples < opts.batch_size:
        raise TrainError(
            f"{split.train_samples} training samples are fewer than one batch "
            f"(--batch-size {opts.batch_size}); lower --batch-size",
            out_dir=str(out_dir),
        )
    random_seed(opts.seed, 0)  # as open_clip_train.main: augmentation and order repeat
    clip = load_clip(base.model_copy(update={"device": device, "precision": "fp32"}))
    model = clip.model
    model.output_dict = True
    train_tf = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=True)
    model = _prepare_model(model, opts)
    trainable, total = count_parameters(model)
    names = trainable_names(model)
    args = _args(
        split,
        out_dir,
        opts,
        device=device,
        precision=precision,
        model_name=clip.name,
        report_to=report_to,
        wandb_project=wandb_project,
    )
    optimizer = _optimizer(model, args)
    scaler = torch.amp.GradScaler(device=device) if precision == "amp" else None
    checkpoint_dir = out_dir / "checkpoints"
    checkpoint = load_checkpoint(checkpoint_dir)
    start_epoch = 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scaler is not None and "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
        start_epoch = int(checkpoint["epoch"])
        state.epochs = state.epochs[:start_epoch]
        log.info("resuming after epoch %d from %s", start_epoch, checkpoint_dir)

    data = get_data(args, (train_tf, clip.preprocess), epoch=start_epoch, tokenizer=clip.tokenizer)
    steps = data["train"].dataloader.num_batches
    scheduler = cosine_lr(optimizer, args.lr, args.warmup, steps * args.epochs)
    writer = _loggers(args, resumed=start_epoch > 0)
    loss = _TrackedLoss(create_loss(args), on_step)
    loss.steps_per_epoch = steps
    try:
        for epoch in range(start_epoch, opts.epochs):
            loss.epoch, loss.values = epoch, []
            train_one_epoch(
                model, data, loss, epoch, optimizer, scaler, scheduler, None, args, tb_writer=writer
            )
            val = evaluate(model, data, epoch + 1, args, tb_writer=writer, tokenizer=clip.tokenizer)
            payload = {
                "epoch": epoch + 1,
                "name": args.name,
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
            }
            if scaler is not None:
                payload["scaler"] = scaler.state_dict()
            save_checkpoint(checkpoint_dir, payload)
            summary = {
                "epoch": epoch + 1,
                "train_loss": sum(loss.values) / max(1, len(loss.values)),
                "steps": len(loss.values),
                "val": {k: float(v) for k, v in val.items()},
            }
            state.epochs.append(summary)
            state.save(out_dir)
            if on_epoch is not None:
                on_epoch(summary)
    finally:
        if writer is not None:
            writer.close()
        if args.wandb:
            import wandb

            wandb.finish()

    model.eval()
    adapter_dir = None
    if opts.lora_tower is not None:
        adapter_dir = out_dir / "lora_adapter"
        model = merge_lora(model, adapter_dir)
    model_dir = write_open_clip_model(model, clip.name, out_dir / "model")
    state.save(out_dir)
    return TrainResult(
        out_dir=out_dir,
        model_dir=model_dir,
        weights=model_dir / WEIGHTS_FILE,
        adapter_dir=adapter_dir,
        device=device,
        precision=precision,
        trainable_params=trainable,
        total_params=total,
        start_epoch=start_epoch,
        epochs=list(state.epochs),
        trainable_names=names,
    )
