"""The YAML vocabularies under ``prompts/vocabulary/``: contrast pairs, findings, morphology.

Example::

    vocab = load_contrast_vocabulary()
    vocab.pairs[0].a, vocab.pairs[0].b, vocab.sha256
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pathgen.errors import ConfigError
from pathgen.prompts import default_prompts_dir

CONTRAST_FILE = "contrast_pairs.yaml"
MORPHOLOGY_FILE = "morphology.yaml"


def vocabulary_dir(prompts_dir: Path | str | None = None) -> Path:
    """``<prompts>/vocabulary``."""
    root = Path(prompts_dir) if prompts_dir is not None else default_prompts_dir()
    return root / "vocabulary"


@dataclass(frozen=True)
class ContrastPair:
    """Two contrasting terms of one category (symmetric)."""

    category: str
    a: str
    b: str


@dataclass(frozen=True)
class Finding:
    """A plausible finding sentence the degrader may add; ``key`` detects it in a text."""

    key: str
    sentence: str


@dataclass(frozen=True)
class ContrastVocabulary:
    pairs: tuple[ContrastPair, ...]
    findings: tuple[Finding, ...]
    name: str
    sha256: str


@dataclass(frozen=True)
class MorphologyOption:
    name: str
    prompts: tuple[str, ...]
    sentence: str | None


@dataclass(frozen=True)
class MorphologyGroup:
    name: str
    options: tuple[MorphologyOption, ...]
    always: bool = False


@dataclass(frozen=True)
class MorphologyVocabulary:
    templates: tuple[str, ...]
    groups: tuple[MorphologyGroup, ...]
    softmax_temperature: float
    min_margin: float
    name: str
    sha256: str


@lru_cache(maxsize=512)
def term_pattern(term: str) -> re.Pattern[str]:
    """Regex for ``term`` on word boundaries; ``-`` and spaces in the term match either."""
    words = re.split(r"[\s-]+", term.strip())
    body = r"[\s-]+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![\w-]){body}(?![\w-])", re.IGNORECASE)


def _read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    if not path.is_file():
        raise ConfigError("vocabulary file not found", path=str(path))
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path=str(path))
    return data, hashlib.sha256(raw).hexdigest()


def _field(item: Any, key: str, path: Path, where: str) -> Any:
    if not isinstance(item, dict) or item.get(key) in (None, ""):
        raise ConfigError(f"{where}: missing {key!r}", path=str(path))
    return item[key]


@lru_cache(maxsize=8)
def _load_contrast(path: Path) -> ContrastVocabulary:
    data, digest = _read_yaml(path)
    pairs = []
    for i, item in enumerate(data.get("pairs") or []):
        where = f"pairs[{i}]"
        a, b = str(_field(item, "a", path, where)), str(_field(item, "b", path, where))
        pairs.append(ContrastPair(category=str(item.get("category", "other")), a=a, b=b))
    findings = []
    for i, item in enumerate(data.get("findings") or []):
        where = f"findings[{i}]"
        findings.append(
            Finding(
                key=str(_field(item, "key", path, where)),
                sentence=str(_field(item, "sentence", path, where)),
            )
        )
    if not pairs:
        raise ConfigError("no contrast pairs defined under 'pairs'", path=str(path))
    return ContrastVocabulary(
        pairs=tuple(pairs), findings=tuple(findings), name=path.name, sha256=digest
    )


def load_contrast_vocabulary(prompts_dir: Path | str | None = None) -> ContrastVocabulary:
    """Load ``contrast_pairs.yaml`` (cached per path)."""
    return _load_contrast((vocabulary_dir(prompts_dir) / CONTRAST_FILE).resolve())


@lru_cache(maxsize=8)
def _load_morphology(path: Path) -> MorphologyVocabulary:
    data, digest = _read_yaml(path)
    groups = []
    for gi, g in enumerate(data.get("groups") or []):
        gname = str(_field(g, "name", path, f"groups[{gi}]"))
        options = []
        for oi, o in enumerate(g.get("options") or []):
            where = f"groups[{gi}].options[{oi}]"
            prompts = tuple(str(p) for p in _field(o, "prompts", path, where))
            sentence = o.get("sentence")
            options.append(
                MorphologyOption(
                    name=str(_field(o, "name", path, where)),
                    prompts=prompts,
                    sentence=str(sentence) if sentence else None,
                )
            )
        if len(options) < 2:
            raise ConfigError(f"group {gname!r} needs at least two options", path=str(path))
        groups.append(MorphologyGroup(gname, tuple(options), bool(g.get("always", False))))
    templates = tuple(str(t) for t in data.get("templates") or ["{}"])
    if not all("{}" in t for t in templates):
        raise ConfigError("every entry of 'templates' needs a '{}' placeholder", path=str(path))
    return MorphologyVocabulary(
        templates=templates,
        groups=tuple(groups),
        softmax_temperature=float(data.get("softmax_temperature", 0.01)),
        min_margin=float(data.get("min_margin", 0.15)),
        name=path.name,
        sha256=digest,
    )


def load_morphology_vocabulary(prompts_dir: Path | str | None = None) -> MorphologyVocabulary:
    """Load ``morphology.yaml`` (cached per path)."""
    return _load_morphology((vocabulary_dir(prompts_dir) / MORPHOLOGY_FILE).resolve())
