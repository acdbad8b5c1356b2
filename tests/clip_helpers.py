"""Tiny random-weight CLIP models for tests: no download, a few MB, built with a fixed seed.

Example::

    from tests.clip_helpers import load_tiny_clip
    clip = load_tiny_clip(tmp_path)
"""

from __future__ import annotations

from pathlib import Path

from pathgen.embed.model import ClipModel, load_clip
from pathgen.embed.tiny import write_tiny_clip
from pathgen.settings import ModelSettings

ASSETS = Path(__file__).resolve().parent / "assets"
TINY_CONFIG = ASSETS / "tiny_clip.json"


def make_tiny_checkpoint(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the tiny config and random weights; returns ``(config_json, checkpoint)``."""
    return write_tiny_clip(directory, seed=seed)


def tiny_settings(directory: Path, seed: int = 0, **overrides: object) -> ModelSettings:
    """ModelSettings that load the tiny checkpoint through the user path (config + file)."""
    config_json, checkpoint = make_tiny_checkpoint(directory, seed)
    values = {"config_json": str(config_json), "pretrained": str(checkpoint), "device": "cpu"}
    values.update(overrides)
    return ModelSettings(**values)


def load_tiny_clip(directory: Path, seed: int = 0, **overrides: object) -> ClipModel:
    """A loaded tiny CLIP (cpu, fp32) whose weights depend only on ``seed``."""
    return load_clip(tiny_settings(directory, seed, **overrides))
