"""Load an open_clip model from :class:`~pathgen.settings.ModelSettings` and encode with it.

The user names the weights in one of three ways:

* ``pretrained = "path/to/pathgen-clip-l.pt"``: a local checkpoint (a bare
  ``state_dict``, ``{"state_dict": ...}`` or ``module.``-prefixed keys all load);
* ``pretrained = "laion2b_s32b_b82k"``: an open_clip tag, fetched from the hub
  because the user asked for it (no network -> :class:`ModelLoadError`);
* ``pretrained = None``: random weights, for demos and tests only (logged loudly).

``config_json`` registers a model config of the user's own; the model name is then
the JSON's ``name`` field or its file stem.

Example::

    clip = load_clip(settings.model)
    emb = clip.encode_images([tile])          # (1, D) float32, unit norm
    clip.count_tokens("a long caption ...")   # BPE tokens incl. start/end
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image

from pathgen.errors import ConfigError, ModelLoadError
from pathgen.settings import ModelSettings

log = logging.getLogger(__name__)

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")
_REQUIRED_CFG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


@dataclass
class ClipModel:
    """A loaded CLIP model with its eval transform, tokenizer and identity.

    ``fingerprint`` names the exact weights (model name plus the checkpoint's sha256,
    the hub tag, or ``random-init:<seed>`` with the config hash); store it with every
    embedding so embeddings of different models never mix.
    """

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = plain fp32
    fingerprint: str
    name: str
    context_length: int
    batch_size: int = 64

    @property
    def embed_dim(self) -> int:
        """Width of the joint embedding space."""
        proj = getattr(self.model.visual, "proj", None)
        if proj is not None:
            return int(proj.shape[1])
        return int(self.model.visual.output_dim)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def encode_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed a preprocessed ``(B, 3, H, W)`` batch; returns unit-norm float32 on the device."""
        with torch.inference_mode(), self._autocast():
            feats = self.model.encode_image(pixels.to(self.device, non_blocking=True))
        feats = feats.float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed PIL images with the model's eval transform; ``(N, D)`` unit-norm float32."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            pixels = torch.stack([self.preprocess(img.convert("RGB")) for img in chunk])
            out.append(self.encode_batch(pixels).cpu().numpy())
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts (truncated to the context length); ``(N, D)`` unit-norm float32."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[start : start + self.batch_size]))
            with torch.inference_mode(), self._autocast():
                feats = self.model.encode_text(tokens.to(self.device)).float()
            feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            out.append(feats.cpu().numpy())
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def count_tokens(self, text: str) -> int:
        """Tokens the tokenizer would produce for ``text``, start/end included, untruncated.

        Compare with :attr:`context_length` (77 for CLIP) to check a caption fits.
        """
        return count_tokens(self.tokenizer, text)

    def score(self, image: Image.Image, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of one image with each text, shape ``(len(texts),)``."""
        img = self.encode_images([image])[0]
        return self.encode_texts(texts) @ img


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens an open_clip ``tokenizer`` makes of ``text``, start/end included, untruncated."""
    if isinstance(tokenizer, open_clip.SimpleTokenizer):
        return len(tokenizer.encode(text)) + 2
    inner = getattr(tokenizer, "tokenizer", None)  # HFTokenizer / SigLipTokenizer
    if inner is not None and callable(inner):
        return len(inner(text, add_special_tokens=True)["input_ids"])
    return len(tokenizer.encode(text)) + 2


@dataclass
class ClipTokens:
    """A model's tokenizer without the model: what a process that only checks summaries
    against CLIP's context needs (no weights built or loaded)."""

    tokenizer: Any
    context_length: int

    def count(self, text: str) -> int:
        """As :meth:`ClipModel.count_tokens`."""
        return count_tokens(self.tokenizer, text)


def load_tokens(settings: ModelSettings | None = None) -> ClipTokens:
    """The tokenizer of the model ``settings`` names (see :func:`load_clip`)."""
    settings = settings or ModelSettings()
    name = register_model_config(settings.config_json)[0] if settings.config_json else settings.name
    config = open_clip.get_model_config(name)
    if config is None:
        raise ModelLoadError(_unknown(name))
    tokenizer = open_clip.get_tokenizer(name)
    context_length = getattr(tokenizer, "context_length", None)
    return ClipTokens(
        tokenizer, int(context_length or config["text_cfg"].get("context_length", 77))
    )


def _unknown(name: str) -> str:
    return (
        f"unknown open_clip model {name!r}: set settings.model.name to one of "
        "open_clip.list_models() or point settings.model.config_json at a config JSON"
    )


def select_device(requested: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit device is an error."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("settings.model.device = 'cuda' but no CUDA device is visible")
    if requested == "mps" and not mps_ok:
        raise ModelLoadError("settings.model.device = 'mps' but MPS is not available")
    return torch.device(requested)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: reduced precision on GPU only."""
    if device.type == "cpu":
        if precision in ("fp16", "bf16"):
            log.warning("precision %s ignored on CPU: running fp32", precision)
        return None
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register_model_config(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Register a user's open_clip model config JSON; returns ``(model name, config sha256)``.

    The name is the JSON's ``name`` field, else the file stem.
    """
    file = Path(path)
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            "model config JSON not found; fix settings.model.config_json", path=str(file)
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model config is not valid JSON: {exc}", path=str(file)) from None
    if not isinstance(cfg, dict) or any(k not in cfg for k in _REQUIRED_CFG_KEYS):
        raise ConfigError(
            f"model config needs the keys {', '.join(_REQUIRED_CFG_KEYS)} "
            "(see open_clip/model_configs/*.json)",
            path=str(file),
        )
    name = str(cfg.pop("name", file.stem))
    cfg_hash = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()
    # open_clip keeps its registry in a module dict; add_model_config() only takes files
    # whose stem is the name, so register the parsed config directly.
    open_clip.factory._MODEL_CONFIGS[name] = cfg
    return name, cfg_hash


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.lower().endswith(_CHECKPOINT_SUFFIXES)
        or Path(value).expanduser().exists()
    )


def _config_hash(name: str) -> str:
    cfg = open_clip.get_model_config(name)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()


def load_clip(settings: ModelSettings | None = None, *, seed: int = 0) -> ClipModel:
    """Build the model named by ``settings`` (see the module docstring); never fetches silently.

    Raises :class:`ModelLoadError` for a missing or corrupt checkpoint, an unknown model
    or tag, or a failed download; :class:`ConfigError` for a bad ``config_json``.
    """
    settings = settings or ModelSettings()
    name = settings.name
    cfg_hash = None
    if settings.config_json:
        name, cfg_hash = register_model_config(settings.config_json)
    if open_clip.get_model_config(name) is None:
        raise ModelLoadError(_unknown(name))
    cfg_hash = cfg_hash or _config_hash(name)
    device = select_device(settings.device)
    pretrained = settings.pretrained
    kwargs: dict[str, Any] = {"device": device, "pretrained_text": False, "pretrained_image": False}

    if pretrained is None:
        log.warning(
            "!!! model %s has RANDOM WEIGHTS (settings.model.pretrained is unset, seed %d): "
            "embeddings are meaningless; use this for demos and tests only !!!",
            name,
            seed,
        )
        torch.manual_seed(seed)
        fingerprint = f"{name}:random-init:{seed}:cfg-{cfg_hash[:12]}"
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"cannot build model {name!r}: {exc}") from exc
    elif _looks_like_path(pretrained):
        ckpt = Path(pretrained).expanduser()
        if not ckpt.is_file():
            raise ModelLoadError(
                f"checkpoint file not found: {ckpt} (settings.model.pretrained); check the "
                "path, or give an open_clip pretrained tag"
            )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=str(ckpt), **kwargs
            )
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load checkpoint {ckpt} into model {name!r}: {type(exc).__name__}: "
                f"{exc}. The file may be truncated or corrupt (download it again) or made for "
                "another architecture (check settings.model.name / config_json)"
            ) from exc
        fingerprint = f"{name}:cfg-{cfg_hash[:12]}:sha256-{file_sha256(ckpt)}"
    else:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ModelLoadError(
                f"settings.model.pretrained = {pretrained!r} is neither an existing file nor "
                f"an open_clip tag for {name!r} (tags: {', '.join(tags) or 'none'})"
            )
        log.info("fetching %s/%s from the model hub (explicit tag)", name, pretrained)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, **kwargs
            )
        except Exception as exc:
            raise ModelLoadError(
                f"could not fetch weights {name}/{pretrained} from the hub: {exc}. "
                "No network? Pass a local checkpoint path in settings.model.pretrained"
            ) from exc
        fingerprint = f"{name}:tag-{pretrained}"

    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    context_length = int(getattr(tokenizer, "context_length", None) or model.context_length)
    return ClipModel(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        device=device,
        dtype=autocast_dtype(device, settings.precision),
        fingerprint=fingerprint,
        name=name,
        context_length=context_length,
        batch_size=settings.batch_size,
    )
