"""Prompt templates: Jinja2 files in ``prompts/`` (shipped as package data), loaded by name.

Every rendered prompt comes with its :class:`Template` (name, source and sha256 of the
source) so each stored output can say exactly which prompt produced it.

A template may hold a system part and a user part as two blocks::

    {% block system %}You are a pathologist.{% endblock %}
    {% block user %}Describe the image.{% endblock %}

:func:`render_parts` returns the blocks separately; :func:`render` returns the whole
rendered text (useful for single-part templates). Undefined variables are errors
(``StrictUndefined``) whose message names the template.

Example::

    parts, template = render_parts("describe_v1", report=None, caption=None, examples=[])
    parts.system, parts.user, template.sha256
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from pathgen.assets import prompts_dir
from pathgen.errors import ConfigError

TEMPLATE_SUFFIX = ".jinja2"


@lru_cache(maxsize=1)
def default_prompts_dir() -> Path:
    """The prompt files shipped with pathgen (the repository's ``prompts/`` folder)."""
    return prompts_dir()


@dataclass(frozen=True)
class Template:
    """One prompt template file: its name (without suffix), source text and sha256."""

    name: str
    source: str
    sha256: str
    path: Path


@dataclass(frozen=True)
class PromptParts:
    """A rendered prompt split into its system part (may be empty) and user part."""

    system: str
    user: str


def _normalise_name(name: str) -> str:
    return name[: -len(TEMPLATE_SUFFIX)] if name.endswith(TEMPLATE_SUFFIX) else name


@lru_cache(maxsize=16)
def _environment(root: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def load_template(name: str, prompts_dir: Path | str | None = None) -> Template:
    """Read the template ``name``: a shipped one (e.g. ``"describe_v1"``, from
    ``prompts_dir``) or, when ``name`` is a path (``my/describe_v2.jinja2``), that file.

    A shipped template is read once per process; a file of your own is read again when
    its size or modification time changed. Raises :class:`ConfigError` naming the
    missing file.
    """
    if prompts_dir is None and "/" not in name and "\\" not in name:
        return _shipped_template(name)
    return _load_template(name, prompts_dir)


@lru_cache(maxsize=64)
def _shipped_template(name: str) -> Template:
    return _load_template(name, None)


def _load_template(name: str, prompts_dir: Path | str | None) -> Template:
    if "/" in name or "\\" in name:
        path = Path(name).expanduser()
        short = _normalise_name(path.name)
    else:
        root = Path(prompts_dir) if prompts_dir is not None else default_prompts_dir()
        short = _normalise_name(name)
        path = root / f"{short}{TEMPLATE_SUFFIX}"
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not path.is_file():
        raise ConfigError(
            f"prompt template {short!r} not found at {path}: fix the stage's 'template' "
            "setting (a shipped template's name, or the path of your own .jinja2 file)",
            path=str(path),
        )
    return _read_template(short, path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _read_template(name: str, path: Path, _size: int, _mtime_ns: int) -> Template:
    source = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return Template(name=name, source=source, sha256=digest, path=path)


def _compile(template: Template) -> jinja2.Template:
    """The compiled template, kept by path and source hash (compiling is costly)."""
    return _compiled(template.name, template.path, template.sha256, template.source)


@lru_cache(maxsize=64)
def _compiled(name: str, path: Path, _sha256: str, source: str) -> jinja2.Template:
    env = _environment(path.parent.resolve())
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"prompt template {name!r} has a syntax error at line {exc.lineno}: {exc.message}",
            path=str(path),
        ) from None


def _undefined_error(template: Template, exc: jinja2.UndefinedError) -> ConfigError:
    return ConfigError(
        f"prompt template {template.name!r} needs a variable the stage did not pass: {exc.message}",
        path=str(template.path),
    )


def render(
    name: str, /, prompts_dir: Path | str | None = None, **context: Any
) -> tuple[str, Template]:
    """Render the template ``name`` with ``context``; return ``(text, template)``.

    For a template with ``system``/``user`` blocks the text is the system part, a blank
    line and the user part.
    """
    parts, template = render_parts(name, prompts_dir, **context)
    return "\n\n".join(p for p in (parts.system, parts.user) if p), template


def render_parts(
    name: str, /, prompts_dir: Path | str | None = None, **context: Any
) -> tuple[PromptParts, Template]:
    """Render the ``system`` and ``user`` blocks of ``name`` separately.

    A template without a ``user`` block is rendered whole as the user part; a missing
    ``system`` block gives an empty system part.
    """
    template = load_template(name, prompts_dir)
    compiled = _compile(template)
    try:
        if "user" not in compiled.blocks:
            return PromptParts(system="", user=compiled.render(**context).strip()), template
        ctx = compiled.new_context(dict(context))
        user = "".join(compiled.blocks["user"](ctx)).strip()
        system = ""
        if "system" in compiled.blocks:
            system = "".join(compiled.blocks["system"](compiled.new_context(dict(context))))
    except jinja2.UndefinedError as exc:
        raise _undefined_error(template, exc) from None
    return PromptParts(system=system.strip(), user=user), template
