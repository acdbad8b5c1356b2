"""What ``pathgen train-clip`` is asked to do, and the device and precision it runs with.

Pure logic (no torch import), so the device rules are unit-tested on any machine.

Example::

    device = pick_device("auto", cuda_available=True)            # "cuda"
    precision_for(device, "auto", bf16_supported=True)            # "amp_bf16"
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from pathgen.errors import ConfigError

Tune = Literal["full", "lock-image", "lock-text", "lora-image", "lora-text", "lora-both"]
TUNE_MODES: tuple[str, ...] = (
    "full",
    "lock-image",
    "lock-text",
    "lora-image",
    "lora-text",
    "lora-both",
)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainOptions:
    """Training hyper-parameters; everything that changes the result is in :meth:`digest`."""

    tune: str = "full"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-5
    wd: float = 0.1
    warmup: int = 0
    seed: int = 0
    val_fraction: float = 0.2
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0

    def __post_init__(self) -> None:
        if self.tune not in TUNE_MODES:
            raise ConfigError(f"--tune must be one of {', '.join(TUNE_MODES)}, not {self.tune!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}"
            )
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1, not {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("--epochs and --batch-size must be at least 1")

    @property
    def lora_tower(self) -> str | None:
        """``image``, ``text`` or ``both`` for a LoRA mode, else None."""
        return self.tune.split("-", 1)[1] if self.tune.startswith("lora-") else None

    def digest(self) -> str:
        """Hash of the options that shape the training (not device, precision or workers)."""
        shaping = {
            k: v for k, v in asdict(self).items() if k not in ("device", "precision", "workers")
        }
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def pick_device(requested: str, *, cuda_available: bool) -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; an absent ``cuda`` is an error."""
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested == "cuda" and not cuda_available:
        raise ConfigError("--device cuda but no CUDA device is visible", key="--device")
    if requested not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, not {requested!r}", key="--device")
    return requested


def precision_for(device: str, requested: str, *, bf16_supported: bool) -> str:
    """The open_clip_train ``--precision`` for ``requested`` on ``device``.

    ``auto``: bf16 autocast (``amp_bf16``) on a GPU that supports it, fp16 autocast with a
    gradient scaler (``amp``) on an older GPU, plain fp32 on the CPU. ``bf16`` is honoured
    on the CPU too (CPU autocast), which is how the GPU code path is tested without a GPU.
    """
    if requested == "auto":
        if device == "cpu":
            return "fp32"
        return "amp_bf16" if bf16_supported else "amp"
    if requested == "fp32":
        return "fp32"
    if requested == "bf16":
        if device == "cuda" and not bf16_supported:
            raise ConfigError("--precision bf16 but this GPU has no bf16 support; use fp16")
        return "amp_bf16"
    if device == "cpu":
        raise ConfigError("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return "amp"
