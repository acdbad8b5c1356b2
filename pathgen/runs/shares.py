"""Caption work over several processes: which stages, how many processes, each one's share.

One event loop spends a few milliseconds of CPU per LLM call (building and sending the
request, parsing the answer, writing the revision), so a single process saturates one
core at a few hundred calls per second. ``pathgen run`` therefore spreads the online
caption stages that need no CLIP model (provider ``openai`` or ``mistral``, not in batch
mode: describe without few-shot examples, fuse, degrade in LLM mode, revise, instruct)
over ``workers.caption_processes`` processes: itself and helpers that import no model
code. Summaries are checked against CLIP's tokenizer, so summarize stays in ``pathgen
run``, which also keeps half a share of the spread stages. Each process gets its share
of every spread stage's limits (``max_concurrency``, ``requests_per_minute``,
``tokens_per_minute``), so the limits hold at the provider for the run as a whole.

``"auto"`` takes one process per 128 concurrent calls of the spread stages, at most one
per CPU core: the default limits (16 per stage) stay in one process.

Example::

    n = process_count(settings, stages)
    mine = share(settings, 0, n)  # helpers get share(settings, i, n), i = 1..n-1
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pathgen.settings import Settings, StageSettings

#: Concurrent calls one process keeps in flight before "auto" adds another.
CALLS_PER_PROCESS = 128
ONLINE = ("openai", "mistral")
SPREADABLE = ("describe", "fuse", "degrade", "revise", "instruct")
#: ``pathgen run``'s weight among the processes (helpers weigh 1): it also summarizes.
LEAD_WEIGHT = 0.5


def _online(cfg: StageSettings, stage: str) -> bool:
    if cfg.provider not in ONLINE or cfg.mode == "batch":
        return False
    return stage != "degrade" or cfg.mode == "llm"


def _configs(settings: Settings, stage: str) -> list[StageSettings]:
    cap = settings.captioning
    extra = list(cap.describers) if stage == "describe" else []
    return [getattr(cap, stage), *extra]


def spread_stages(settings: Settings, stages: Sequence[str]) -> list[str]:
    """The stages of ``stages`` that helper processes share: online calls, no CLIP."""
    cap = settings.captioning
    found = []
    for stage in stages:
        if stage not in SPREADABLE or (stage == "instruct" and not cap.instruct.enabled):
            continue
        if stage == "describe" and cap.few_shot_k and cap.few_shot_references:
            continue  # few-shot examples are found with the CLIP model
        if all(_online(cfg, stage) for cfg in _configs(settings, stage)):
            found.append(stage)
    return found


def process_count(settings: Settings, stages: Sequence[str]) -> int:
    """How many processes share the spread stages of a run (1: no helpers)."""
    spread = [cfg for s in spread_stages(settings, stages) for cfg in _configs(settings, s)]
    if not spread:
        return 1
    wanted = settings.workers.caption_processes
    if wanted == "auto":
        calls = sum(cfg.max_concurrency for cfg in spread)
        wanted = min(os.cpu_count() or 1, calls // CALLS_PER_PROCESS)
    # Every process needs at least one call of each limit.
    floor = min(
        n
        for cfg in spread
        for n in (cfg.max_concurrency, cfg.requests_per_minute, cfg.tokens_per_minute)
        if n is not None
    )
    return max(1, min(wanted, floor))


def _part(total: int | None, index: int, count: int) -> int | None:
    """Process ``index``'s part of ``total`` split over ``count`` processes by weight
    (``pathgen run`` weighs :data:`LEAD_WEIGHT`, each helper 1); at least 1 each."""
    if total is None:
        return None
    lead = int(total * LEAD_WEIGHT / (LEAD_WEIGHT + count - 1))
    if index == 0:
        return max(1, lead)
    rest, helpers = total - lead, count - 1
    return max(1, rest // helpers + (1 if index - 1 < rest % helpers else 0))


def _shared(cfg: StageSettings, index: int, count: int) -> StageSettings:
    return cfg.model_copy(
        update={
            "max_concurrency": _part(cfg.max_concurrency, index, count),
            "requests_per_minute": _part(cfg.requests_per_minute, index, count),
            "tokens_per_minute": _part(cfg.tokens_per_minute, index, count),
        }
    )


def share(settings: Settings, index: int, count: int) -> Settings:
    """``settings`` with process ``index`` of ``count``'s part of the limits of each stage
    the processes share (``count`` 1: ``settings`` itself)."""
    if count <= 1:
        return settings
    cap = settings.captioning
    spread = spread_stages(settings, SPREADABLE)
    update: dict[str, object] = {s: _shared(getattr(cap, s), index, count) for s in spread}
    if "describe" in spread:
        update["describers"] = [_shared(d, index, count) for d in cap.describers]
    return settings.model_copy(update={"captioning": cap.model_copy(update=update)})
