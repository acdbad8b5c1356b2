"""LoRA adapters on a CLIP tower with ``peft``; merged back into plain open_clip weights.

Adapters go on every attention block (``nn.MultiheadAttention``) and every other
``nn.Linear`` of the chosen tower(s); every other weight is frozen, so only adapter
parameters train. :func:`merge_lora` saves the adapter (``adapter_config.json`` +
``adapter_model.safetensors``) and returns the open_clip model with the adapters merged
into its weights, which loads anywhere a plain checkpoint does.

Example::

    wrapped = add_lora(model, "image", r=8, alpha=16)
    trainable, total = count_parameters(wrapped)
    merged = merge_lora(wrapped, Path("out/lora_adapter"))
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pathgen.errors import TrainError

#: Module-name prefixes of each tower: open_clip's CLIP keeps the text transformer at the
#: top level, CustomTextCLIP under ``text``.
TOWER_PREFIXES = {"image": ("visual.",), "text": ("transformer.", "text.")}


def lora_targets(model: Any, tower: str) -> list[str]:
    """Names of the attention blocks and linear layers of ``tower`` (image, text or both)."""
    import torch

    prefixes = TOWER_PREFIXES["image"] + TOWER_PREFIXES["text"]
    if tower != "both":
        prefixes = TOWER_PREFIXES[tower]
    attention = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.MultiheadAttention) and name.startswith(prefixes)
    ]
    linear = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name.startswith(prefixes)
        and not any(name.startswith(a + ".") for a in attention)
    ]
    return sorted(attention + linear)


def add_lora(model: Any, tower: str, *, r: int, alpha: int, dropout: float = 0.0) -> Any:
    """Freeze ``model`` and wrap it with LoRA adapters on ``tower``; returns the peft model."""
    import peft

    targets = lora_targets(model, tower)
    if not targets:
        raise TrainError(
            f"no attention or linear layer found in the {tower} tower of this model for LoRA; "
            "use --tune full, lock-image or lock-text"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules="^(?:" + "|".join(re.escape(t) for t in targets) + ")$",
    )
    return peft.get_peft_model(model, config)


def count_parameters(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def trainable_names(model: Any) -> list[str]:
    """Names of the trainable parameters (for a LoRA model: the adapters only)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def merge_lora(wrapped: Any, adapter_dir: Path) -> Any:
    """Save the adapter to ``adapter_dir`` and return the base model with it merged in."""
    adapter_dir.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(str(adapter_dir))
    return wrapped.merge_and_unload()
