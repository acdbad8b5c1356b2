"""The stage order, and the stage lists users name on the command line.

Example::

    parse_stages("describe,revise", key="--stages")   # ["describe", "revise"]
    downstream(["revise"])                             # ["revise", "summarize"]
"""

from __future__ import annotations

from collections.abc import Sequence

from pathgen.errors import ConfigError
from pathgen.types import PIPELINE_STAGES

#: The stages that make caption revisions, in order (what ``--redo`` can run again).
CAPTION_STAGES: tuple[str, ...] = PIPELINE_STAGES[PIPELINE_STAGES.index("describe") :]
#: What ``--redo`` accepts: ``select`` (embed again with the current model, select again:
#: a new selection round, see :mod:`pathgen.runs.reselect`) and the caption stages.
REDOABLE: tuple[str, ...] = ("select", *CAPTION_STAGES)
#: The stages whose settings a ``--redo`` of a stage may change (``select`` re-embeds).
REDONE_WITH: dict[str, tuple[str, ...]] = {"select": ("embed", "select")}


def parse_stages(value: str | None, *, key: str = "--stages") -> list[str]:
    """``"a,b"`` → ``["a", "b"]`` (empty: every stage); unknown names are a ConfigError."""
    if not value:
        return list(PIPELINE_STAGES)
    stages = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in stages if s not in PIPELINE_STAGES]
    if unknown:
        raise ConfigError(
            f"unknown stage(s) {unknown}; stages are {', '.join(PIPELINE_STAGES)}", key=key
        )
    return stages


def downstream(stages: Sequence[str]) -> list[str]:
    """The caption stages from the earliest caption stage of ``stages`` on (what a redo
    must re-run); ``select`` may be named too (it re-runs no caption stage by itself)."""
    bad = [s for s in stages if s not in REDOABLE]
    if bad:
        raise ConfigError(
            f"only {', '.join(REDOABLE)} can be redone, not {bad}",
            key="--redo",
        )
    captions = [s for s in stages if s in CAPTION_STAGES]
    if not captions:
        return []
    first = min(CAPTION_STAGES.index(s) for s in captions)
    return list(CAPTION_STAGES[first:])


def redone_stages(redo: Sequence[str]) -> set[str]:
    """The stages whose settings may change with ``--redo redo`` (``select`` re-embeds)."""
    return {t for s in redo for t in REDONE_WITH.get(s, (s,))}
