"""A tiny random-weight CLIP for demos and tests (no download, a few MB).

Example::

    config_json, checkpoint = write_tiny_clip(tmp_dir, seed=0)
    clip = load_clip(ModelSettings(config_json=str(config_json), pretrained=str(checkpoint)))
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

TINY_CONFIG_NAME = "tiny_clip.json"


def tiny_config_path() -> Path:
    """Path of the tiny model config shipped with the package."""
    return Path(str(resources.files("pathgen.embed").joinpath(TINY_CONFIG_NAME)))


def write_tiny_clip(directory: str | os.PathLike[str], seed: int = 0) -> tuple[Path, Path]:
    """Write ``tiny_clip.json`` and random weights ``tiny_clip.pt`` (a bare state_dict).

    The weights depend only on ``seed``; the global torch RNG is left untouched.
    Returns ``(config_json, checkpoint)``.
    """
    import open_clip
    import torch

    from pathgen.embed.model import register_model_config

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config_json = out / TINY_CONFIG_NAME
    shutil.copyfile(tiny_config_path(), config_json)
    name, _ = register_model_config(config_json)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained_text=False)
    checkpoint = out / "tiny_clip.pt"
    tmp = checkpoint.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, checkpoint)
    return config_json, checkpoint
