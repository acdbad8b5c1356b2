"""The resumable state of a training folder: what it trains, and the epochs done so far.

``OUT/train_state.json`` records the base model's fingerprint, the split and the options
digest, plus one entry per finished epoch (train loss and open_clip_train's validation
metrics). ``OUT/checkpoints/epoch_latest.pt`` is open_clip_train's checkpoint format
(``epoch``, ``state_dict``, ``optimizer``, ``scaler``), written atomically after each epoch.
A rerun with the same identity resumes after the last finished epoch; a rerun with other
options or data stops and says so instead of mixing two trainings.

Example::

    state = TrainState.load(out_dir)
    state.check(identity, out_dir)      # TrainError when the folder trains something else
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathgen.errors import TrainError
from pathgen.export.shards import write_atomic

STATE_FILE = "train_state.json"
LATEST = "epoch_latest.pt"


@dataclass
class TrainState:
    identity: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, out_dir: Path) -> TrainState:
        """The saved state, or an empty one for a new folder."""
        path = out_dir / STATE_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TrainError(
                f"{STATE_FILE} is unreadable ({exc}); use a new --out", out_dir=str(out_dir)
            ) from None
        return cls(identity=dict(data.get("identity") or {}), epochs=list(data.get("epochs") or []))

    def check(self, identity: dict[str, Any], out_dir: Path) -> None:
        """Adopt ``identity`` for a new folder; stop when the folder trains something else."""
        if not self.identity:
            self.identity = identity
            return
        changed = sorted(k for k in identity if self.identity.get(k) != identity[k])
        if changed:
            raise TrainError(
                f"this folder holds a training with other {', '.join(changed)}; resume it with "
                "the same options, or train into a new --out",
                out_dir=str(out_dir),
            )

    def save(self, out_dir: Path) -> None:
        data = {"identity": self.identity, "epochs": self.epochs}
        write_atomic(out_dir / STATE_FILE, json.dumps(data, indent=1, default=float).encode())


def save_checkpoint(checkpoint_dir: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as ``epoch_latest.pt`` through a temporary file and a rename."""
    import os

    import torch

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_dir / LATEST
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(checkpoint_dir: Path) -> dict[str, Any] | None:
    """The latest checkpoint, or None when no epoch finished yet."""
    import torch

    path = checkpoint_dir / LATEST
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch's own unpickling errors
        raise TrainError(
            f"{path} is unreadable ({type(exc).__name__}: {exc}); delete it to restart",
            out_dir=str(checkpoint_dir.parent),
        ) from None
