"""Checks before a run claims any work, so that a bad setting costs no paid call.

``pathgen run`` (and ``pathgen check``) load the CLIP model, render every enabled
stage's prompt template with sample values, resolve every stage's API key variable,
and check the manifest; with ``probe`` they also send one tiny request to each distinct
provider configuration. Every problem found is reported at once, naming the stage and
the setting, as :class:`~pathgen.errors.CannotStart` (exit code 2).

Example::

    checked = await preflight(settings, stages, entries, probe=True)
    checked.clip        # the loaded model, handed on so the run does not load it again
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pathgen.errors import BadOutput, CannotStart, LLMError, PathgenError, RateLimited
from pathgen.runs.manifest import SlideEntry
from pathgen.settings import Settings, StageSettings

#: What a probe asks: one token of anything.
PROBE_TEXT = "Reply with the word OK."
PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LLMStage:
    """An enabled stage that calls a provider (or the offline one)."""

    stage: str
    setting: str  # where it is configured, e.g. "captioning.describe"
    cfg: StageSettings


@dataclass
class Checked:
    """What the checks found: the loaded model and notes that do not stop the run."""

    clip: Any = None
    notes: list[str] = field(default_factory=list)


def llm_stages(settings: Settings, stages: Sequence[str]) -> list[LLMStage]:
    """The provider-backed steps of ``stages`` as configured (order of the pipeline)."""
    cap = settings.captioning
    out: list[LLMStage] = []
    if "select" in stages and settings.selection.llm_prompts and settings.selection.llm:
        out.append(LLMStage("select", "selection.llm", settings.selection.llm))
    if "describe" in stages:
        out.append(LLMStage("describe", "captioning.describe", cap.describe))
        for i, extra in enumerate(cap.describers):
            out.append(LLMStage("describe", f"captioning.describers[{i}]", extra))
    if "fuse" in stages and cap.describers:
        out.append(LLMStage("fuse", "captioning.fuse", cap.fuse))
    if "degrade" in stages and cap.degrade_copies > 0 and cap.degrade.mode != "rules":
        out.append(LLMStage("degrade", "captioning.degrade", cap.degrade))
    if "revise" in stages:
        out.append(LLMStage("revise", "captioning.revise", cap.revise))
    if "summarize" in stages:
        out.append(LLMStage("summarize", "captioning.summarize", cap.summarize))
    if "instruct" in stages and cap.instruct.enabled and cap.instruct.provider != "offline":
        out.append(LLMStage("instruct", "captioning.instruct", cap.instruct))
    return out


def needs_model(settings: Settings, stages: Sequence[str]) -> bool:
    """Embedding, selection, the offline provider and few-shot examples use the run's CLIP
    model (the summary's token check needs only its tokenizer)."""
    if {"embed", "select"} & set(stages):
        return True
    cap = settings.captioning
    if "describe" in stages and cap.few_shot_k and cap.few_shot_references:
        return True
    return any(step.cfg.provider == "offline" for step in llm_stages(settings, stages))


def _render_samples(step: LLMStage, settings: Settings) -> None:
    """Render the step's template(s) with sample values through the stage's own formatter."""
    from PIL import Image

    from pathgen.select.llm_prompts import organ_prompts_request
    from pathgen.stages import (
        DescribeInput,
        format_degrade_llm,
        format_describe,
        format_fuse,
        format_revise,
        format_summarize,
    )

    image = Image.new("RGB", (64, 64), (200, 120, 180))
    text = "Nests of atypical epithelial cells in a desmoplastic stroma. Focal necrosis."
    cfg = step.cfg
    if step.stage == "select":
        organ_prompts_request("breast", 2, model=cfg.model)
    elif step.stage == "describe":
        format_describe(DescribeInput(image=image), cfg)
        format_describe(
            DescribeInput(image=image, report=text, caption="a caption", examples=(text,)), cfg
        )
    elif step.stage == "fuse":
        format_fuse([text, text], cfg)
    elif step.stage == "degrade":
        format_degrade_llm(text, cfg, n_edits=3, seed=0)
    elif step.stage == "revise":
        format_revise(text, cfg)
        format_revise(text, cfg, image)
    elif step.stage == "summarize":
        limit = settings.captioning.max_clip_tokens
        format_summarize(text, cfg, limit)
        format_summarize(text, cfg, limit, strict=True, previous=text, previous_tokens=90)
    elif step.stage == "instruct":
        from pathgen.stages.instruct import format_instruct, format_judge, parse_instruct

        format_instruct(text, cfg, image)
        drafts = parse_instruct('{"items": [{"type": "open", "question": "Q?", "answer": "A."}]}')
        format_judge(text, drafts, cfg)


def _check_key(step: LLMStage) -> str | None:
    from pathgen.llm.credentials import api_key, key_env

    try:
        api_key(key_env(step.cfg.api_key_env, step.cfg.provider), provider=step.cfg.provider)
    except PathgenError as exc:
        return str(exc).removeprefix("api_key_env: ")
    return None


def _manifest_problems(entries: Sequence[SlideEntry]) -> tuple[list[str], list[str]]:
    """(fatal, notes): no slide at all is fatal; some missing slides are noted (the tile
    stage records each on its row with the reason)."""
    if not entries:
        return ["no slides: set run.manifest in the config or pass --manifest"], []
    missing = [e.path for e in entries if not os.path.exists(e.path)]
    if len(missing) == len(entries):
        return [f"none of the {len(entries)} slide(s) exists (first: {missing[0]})"], []
    notes = []
    if missing:
        notes.append(f"{len(missing)} of {len(entries)} slide(s) not found (first: {missing[0]})")
    reports = [e.report_path for e in entries if e.report_path]
    absent = [r for r in reports if not os.path.isfile(r)]
    if absent:
        notes.append(f"{len(absent)} report file(s) not found (first: {absent[0]})")
    repeated = [p for p, n in Counter(e.path for e in entries).items() if n > 1]
    if repeated:
        notes.append(f"{len(repeated)} slide(s) listed more than once (first: {repeated[0]})")
    return [], notes


def _organ_notes(entries: Sequence[SlideEntry], default_organ: str | None) -> list[str]:
    """Organs (a manifest's ``organ``, else ``run.organ``) the retrieval prompt library does
    not know: those slides are selected with the generic prompts only."""
    from pathgen.promptlib import GENERIC, load_library, resolve_organ

    organs = [organ for organ in (e.organ or default_organ for e in entries) if organ]
    if not organs:  # nothing to look up: the library (0.6 s to load) is not needed
        return []
    library = load_library()
    unknown = Counter(organ for organ in organs if resolve_organ(organ, library) is None)
    if not unknown:
        return []
    listed = ", ".join(f"{o!r} ({n} slide(s))" for o, n in sorted(unknown.items()))
    known = ", ".join(sorted(k for k in library if k != GENERIC))
    return [
        f"organ(s) not in the prompt library: {listed}; their slides get the generic prompts "
        f"only (organs: {known}; aliases work too)"
    ]


async def probe(step: LLMStage) -> str | None:
    """One one-token request with the step's settings; the problem in words, or None."""
    from pathgen.llm.base import ChatRequest, Message
    from pathgen.llm.factory import make_client

    cfg = step.cfg.model_copy(update={"max_attempts": 1, "requests_per_minute": None})
    client = make_client(cfg)
    request = ChatRequest((Message("user", PROBE_TEXT),), model=cfg.model, max_tokens=1)
    try:
        await asyncio.wait_for(client.complete(request), PROBE_TIMEOUT_S)
    except (RateLimited, BadOutput):
        return None  # the provider is there, knows the model and accepts the key
    except (LLMError, TimeoutError) as exc:
        where = cfg.base_url or "the provider's default endpoint"
        return f"probe of model {cfg.model!r} at {where} failed: {exc or 'timed out'}"
    finally:
        await client.aclose()
    return None


async def preflight(
    settings: Settings,
    stages: Sequence[str],
    entries: Sequence[SlideEntry] | None = None,
    *,
    probe_providers: bool = False,
) -> Checked:
    """Run every check for ``stages``; raise :class:`CannotStart` listing all problems.

    ``entries`` (the manifest's slides) are checked when given (``pathgen worker`` has none).
    """
    problems: list[tuple[str, str, str]] = []
    checked = Checked()
    if entries is not None:
        fatal, checked.notes = _manifest_problems(entries)
        checked.notes += _organ_notes(entries, settings.run.organ)
        problems += [("", "run.manifest", msg) for msg in fatal]
    refs = settings.captioning.few_shot_references
    if refs and settings.captioning.few_shot_k and not os.path.isfile(refs):
        problems.append(("describe", "captioning.few_shot_references", f"not found: {refs}"))
    steps = llm_stages(settings, stages)
    for step in steps:
        if step.cfg.provider != "offline":
            missing = _check_key(step)
            if missing:
                problems.append((step.stage, f"{step.setting}.api_key_env", missing))
        try:
            _render_samples(step, settings)
        except PathgenError as exc:
            problems.append((step.stage, f"{step.setting}.template", str(exc)))
    if needs_model(settings, stages):
        from pathgen.embed import load_clip

        try:
            checked.clip = await asyncio.to_thread(load_clip, settings.model)
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported, not raised
            problems.append(("embed", "model", f"the model does not load: {exc}"))
    elif "summarize" in stages:
        from pathgen.embed import load_tokens

        try:
            await asyncio.to_thread(load_tokens, settings.model)
        except Exception as exc:  # noqa: BLE001 - as above
            problems.append(("summarize", "model", f"the model's tokenizer does not load: {exc}"))
    if probe_providers and not problems:
        distinct: dict[tuple[Any, ...], LLMStage] = {}
        for step in steps:
            if step.cfg.provider != "offline":
                c = step.cfg
                distinct.setdefault((c.provider, c.base_url, c.model, c.api_key_env), step)
        answers = await asyncio.gather(*(probe(step) for step in distinct.values()))
        for step, answer in zip(distinct.values(), answers, strict=True):
            if answer:
                problems.append((step.stage, step.setting, answer))
    if problems:
        raise CannotStart(problems)
    return checked
