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
    """The caption stages from the earliest of ``stages`` on (what a redo must re-run)."""
    bad = [s for s in stages if s not in CAPTION_STAGES]
    if bad:
        raise ConfigError(
            f"only caption stages can be redone, not {bad}; "
            f"caption stages are {', '.join(CAPTION_STAGES)}",
            key="--redo",
        )
    first = min(CAPTION_STAGES.index(s) for s in stages)
    return list(CAPTION_STAGES[first:])
