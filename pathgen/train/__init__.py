"""Fine-tune the selection CLIP on a pathgen export (open_clip_train underneath).

Heavy imports (torch, open_clip, peft) happen inside the functions that train.

Example::

    from pathgen.train import TrainOptions, finetune
    summary = finetune(Path("export"), run_model, Path("trained"), TrainOptions(epochs=3))
"""

from __future__ import annotations

from pathgen.train.finetune import finetune
from pathgen.train.options import TrainOptions, pick_device, precision_for

__all__ = ["TrainOptions", "finetune", "pick_device", "precision_for"]
