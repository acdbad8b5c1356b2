"""Word-level diffs between caption revisions, as escaped HTML with ``<ins>`` / ``<del>``.

Captions are untrusted model output: every word is escaped before it is wrapped in
markup, so the result is safe to render with autoescaping on.

Example::

    word_diff("focal necrosis", "no necrosis")
    # Markup('<del>focal</del><ins>no</ins> necrosis')
"""

from __future__ import annotations

import difflib
import re

from markupsafe import Markup, escape

_TOKENS = re.compile(r"\s+|[^\s]+")


def _tokens(text: str) -> list[str]:
    return _TOKENS.findall(text)


def word_diff(old: str, new: str) -> Markup:
    """``new`` as HTML, with words removed from ``old`` in ``<del>`` and added ones in ``<ins>``."""
    a, b = _tokens(old), _tokens(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    parts: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(escape("".join(b[j1:j2])))
            continue
        if op in ("delete", "replace"):
            parts.append(Markup("<del>{}</del>").format("".join(a[i1:i2])))
        if op in ("insert", "replace"):
            parts.append(_wrap("ins", "".join(b[j1:j2])))
    return Markup("").join(parts)


def _wrap(tag: str, text: str) -> Markup:
    # Whitespace around the changed words stays outside the tag, so the page reads
    # as the new text exactly, with only the changed words highlighted.
    core = text.strip()
    if not core:
        return escape(text)
    start = text.index(core)
    lead, trail = text[:start], text[start + len(core) :]
    return escape(lead) + Markup(f"<{tag}>{{}}</{tag}>").format(core) + escape(trail)


def diff_stats(old: str, new: str) -> tuple[int, int]:
    """``(words inserted, words deleted)`` going from ``old`` to ``new``."""
    a, b = old.split(), new.split()
    ins = dele = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            dele += i2 - i1
        if op in ("insert", "replace"):
            ins += j2 - j1
    return ins, dele
