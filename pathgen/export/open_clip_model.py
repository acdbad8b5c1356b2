"""An open_clip ``local-dir:`` model folder: config, weights and (HF) tokenizer together.

open_clip_train and ``open_clip.create_model_and_transforms("local-dir:FOLDER")`` build a
model from ``FOLDER/open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``) and load
the weights in ``FOLDER/open_clip_model.safetensors``, so a checkpoint of an architecture
open_clip does not ship trains and loads without registering its config by hand. The same
safetensors file is a valid ``[model] pretrained`` for pathgen (with the model's
``name``/``config_json``).

Example::

    folder = write_open_clip_model(clip.model, clip.name, Path("model"))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pathgen.errors import ExportError

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


def write_open_clip_model(model: Any, name: str, out_dir: Path) -> Path:
    """Write ``model`` (an open_clip CLIP registered as ``name``) as a ``local-dir:`` folder."""
    import open_clip
    import safetensors.torch
    from open_clip.push_to_hf_hub import save_config_for_hf

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ExportError(f"open_clip has no config for model {name!r}; register it first")
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    weights = out_dir / WEIGHTS_FILE
    tmp = weights.with_name(weights.name + ".tmp")
    safetensors.torch.save_file(state, str(tmp))
    os.replace(tmp, weights)
    config_tmp = out_dir / (CONFIG_FILE + ".tmp")
    save_config_for_hf(model, config_tmp, model_config=cfg)
    os.replace(config_tmp, out_dir / CONFIG_FILE)
    if cfg.get("text_cfg", {}).get("hf_tokenizer_name"):
        try:
            open_clip.get_tokenizer(name).save_pretrained(str(out_dir))
        except Exception as exc:  # noqa: BLE001 - the tokenizer library's own errors
            raise ExportError(
                f"cannot save the HF tokenizer of {name!r} into {out_dir}: {exc}"
            ) from exc
    return out_dir


def model_snippet(name: str, config_json: str | None, weights: Path) -> str:
    """The ``[model]`` lines that make pathgen use ``weights``: absolute paths (a config's
    relative paths are taken from its own folder) as TOML strings."""
    lines = ["[model]", f"name = {json.dumps(name)}"]
    if config_json:
        lines.append(f"config_json = {json.dumps(str(Path(config_json).resolve()))}")
    lines.append(f"pretrained = {json.dumps(str(Path(weights).resolve()))}")
    return "\n".join(lines)
