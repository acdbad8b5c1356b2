"""The retrieval prompt library: ``prompts/retrieval/<organ>.yaml``, one file per organ site.

Each file reads::

    organ: breast            # must equal the file stem; "generic" is the generic set
    aliases: [breast cancer, mammary gland]
    prompts:
      - id: breast.idc_nests
        feature: Invasive ductal carcinoma nests
        definition: irregular nests and cords of atypical ductal epithelial cells ...

Example::

    library = load_library()
    prompts = prompts_for("Breast", library)   # breast prompts + generic prompts
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from pathgen.assets import prompts_dir
from pathgen.errors import ConfigError

log = logging.getLogger(__name__)

GENERIC = "generic"
PromptSource = Literal["library", "report", "llm"]


@dataclass(frozen=True)
class RetrievalPrompt:
    """A text used to retrieve tiles; ``text`` is what the CLIP text encoder sees."""

    id: str
    source: PromptSource
    text: str
    organ: str | None = None
    feature: str | None = None


def prompt_text(feature: str, definition: str) -> str:
    """The encoder text of a library prompt (CLIP truncates it to its context)."""
    return f"{feature} – {definition}"


def default_library_dir() -> Path:
    """The retrieval prompt library shipped with pathgen (``prompts/retrieval``)."""
    return prompts_dir() / "retrieval"


def _text_field(entry: dict[str, Any], key: str, where: str, path: Path) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: '{key}' must be a non-empty string", path=str(path))
    return " ".join(value.split())


def _load_file(path: Path) -> tuple[str, list[str], list[RetrievalPrompt]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with organ, aliases, prompts", path=str(path))
    organ = data.get("organ")
    if not isinstance(organ, str) or not organ.strip():
        raise ConfigError("missing 'organ'", path=str(path))
    organ = organ.strip().lower()
    if organ != path.stem.lower():
        raise ConfigError(f"organ {organ!r} must equal the file name stem", path=str(path))
    aliases = data.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError("'aliases' must be a list of strings", path=str(path))
    entries = data.get("prompts")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("'prompts' must be a non-empty list", path=str(path))
    prompts: list[RetrievalPrompt] = []
    seen: set[str] = set()
    for pos, entry in enumerate(entries):
        where = f"prompts[{pos}]"
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{where}: expected a mapping with id, feature, definition", path=str(path)
            )
        pid = _text_field(entry, "id", where, path)
        where = f"prompts[{pos}] (id {pid})"
        if pid in seen:
            raise ConfigError(f"{where}: duplicate id", path=str(path))
        seen.add(pid)
        feature = _text_field(entry, "feature", where, path)
        definition = _text_field(entry, "definition", where, path)
        prompts.append(
            RetrievalPrompt(
                id=pid,
                source="library",
                text=prompt_text(feature, definition),
                organ=organ,
                feature=feature,
            )
        )
    return organ, [a.strip().lower() for a in aliases], prompts


class PromptLibrary(dict[str, list[RetrievalPrompt]]):
    """Organ key -> prompts, plus ``aliases`` (lower-case alias -> organ key)."""

    def __init__(
        self, prompts: dict[str, list[RetrievalPrompt]], aliases: dict[str, str] | None = None
    ) -> None:
        super().__init__(prompts)
        self.aliases: dict[str, str] = dict(aliases or {})


def load_library(directory: str | os.PathLike[str] | None = None) -> PromptLibrary:
    """Read and validate every ``*.yaml`` in ``directory`` (default: the repo's library).

    Raises :class:`ConfigError` naming the file and entry of the first problem; ids must
    be unique across the whole library.
    """
    root = Path(directory) if directory is not None else default_library_dir()
    if not root.is_dir():
        raise ConfigError("prompt library directory not found", path=str(root))
    prompts: dict[str, list[RetrievalPrompt]] = {}
    aliases: dict[str, str] = {}
    owner: dict[str, Path] = {}
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        organ, organ_aliases, items = _load_file(path)
        for item in items:
            if item.id in owner:
                raise ConfigError(
                    f"prompt id {item.id!r} also used in {owner[item.id]}", path=str(path)
                )
            owner[item.id] = path
        prompts[organ] = items
        for alias in organ_aliases:
            aliases.setdefault(alias, organ)
    return PromptLibrary(prompts, aliases)


def resolve_organ(organ: str | None, library: dict[str, list[RetrievalPrompt]]) -> str | None:
    """The library key for ``organ`` (key or alias, case-insensitive), or None if unknown."""
    if not organ:
        return None
    key = " ".join(organ.lower().replace("_", " ").split())
    for candidate in (key, key.replace(" ", "_"), key.replace(" ", "-")):
        if candidate in library:
            return candidate
    aliases: dict[str, str] = getattr(library, "aliases", {})
    return aliases.get(key)


def prompts_for(
    organ: str | None, library: dict[str, list[RetrievalPrompt]]
) -> list[RetrievalPrompt]:
    """Organ-specific prompts followed by the generic ones; unknown organ -> generic only."""
    key = resolve_organ(organ, library)
    generic = list(library.get(GENERIC, []))
    if key is None:
        if organ:
            log.warning(
                "organ %r is not in the prompt library: using the generic prompts only", organ
            )
        return generic
    if key == GENERIC:
        return generic
    return list(library[key]) + generic
