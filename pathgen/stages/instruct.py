"""Instruct stage: instruction-tuning / VQA items from a tile's final description, verified.

``settings.provider == "offline"`` makes the items from templates
(:mod:`.instruct_templates`) and checks them by rules (:mod:`.instruct_verify`); any other
provider is asked (template ``instruct_v1``) for JSON items, parsed tolerantly
(:func:`parse_instruct`), and a judge call (``instruct_judge_v1``) checks every answer
against the description, beside the rule guard against contradicted terms. Label items
come from the manifest in both cases. Provider errors are raised (the queue retries or
parks the tile); an unsupported answer is a failed item with its reason, never an error.

Example::

    batch = await run_instruct(None, settings.captioning.instruct, description,
                               LabelContext(label="tumour"), seed=7)
    [(v.draft.kind, v.verdict.ok) for v in batch]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pathgen.errors import BadOutput
from pathgen.llm.base import ChatRequest, ChatResult, LLMClient
from pathgen.prompts import Template, render_parts
from pathgen.settings import InstructSettings
from pathgen.stages.images import to_image_part
from pathgen.stages.instruct_templates import (
    GENERATOR,
    Draft,
    InstructMix,
    LabelContext,
    make_items,
)
from pathgen.stages.instruct_verify import Verdict, check_item, contradictions
from pathgen.stages.output import build_request, compute_cost, stage_params
from pathgen.stages.text import json_object
from pathgen.stages.vocabulary import load_contrast_vocabulary

if TYPE_CHECKING:
    from pathgen.stages.images import ImageInput

STAGE = "instruct"
JUDGE_STAGE = "instruct_judge"
DEFAULT_TEMPLATE = "instruct_v1"
JUDGE_TEMPLATE = "instruct_judge_v1"
_TYPES = {"open": "open", "yesno": "yesno", "yes/no": "yesno", "choice": "choice",
          "multiple_choice": "choice", "conversation": "conversation"}  # fmt: skip


@dataclass
class VerifiedItem:
    """A draft, its verdict, and the provenance to store with it."""

    draft: Draft
    verdict: Verdict
    provider: str
    model: str
    template_name: str | None
    template_hash: str | None
    verifier: str
    params: dict[str, Any] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost: float = 0.0


def mix_of(settings: InstructSettings) -> InstructMix:
    return InstructMix(
        open=settings.open,
        yesno=settings.yesno,
        choice=settings.choice,
        label=settings.label,
        conversation=settings.conversation,
        max_turns=settings.max_turns,
    )


def format_instruct(
    description: str, settings: InstructSettings, image: ImageInput | None = None
) -> tuple[ChatRequest, Template]:
    """Pure: description (+ image) -> the request for the configured mix (label items aside)."""
    parts, template = render_parts(
        settings.template or DEFAULT_TEMPLATE,
        description=description.strip(),
        has_image=image is not None,
        n_open=settings.open,
        n_yesno=settings.yesno,
        n_choice=settings.choice,
        n_conversation=settings.conversation,
        max_turns=settings.max_turns,
    )
    images = (to_image_part(image, settings.image_max_side),) if image is not None else ()
    meta = {"stage": STAGE, "description": description.strip()}
    return build_request(parts, settings, images=images, meta=meta), template


def _turn(kind: str, raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    question, answer = str(raw.get("question") or "").strip(), str(raw.get("answer") or "").strip()
    if not question or not answer:
        return None
    turn: dict[str, Any] = {"kind": kind, "question": question, "answer": answer}
    if kind == "yesno":
        first = answer.split()[0].strip(".,!").lower()
        if first not in ("yes", "no"):
            return None
        turn["answer_label"] = first
    if kind == "choice":
        options = raw.get("options")
        if not isinstance(options, list) or len(options) < 2:
            return None
        turn["options"] = [str(o).strip() for o in options]
        turn["answer_letter"] = answer[:1].upper()
    return turn


def parse_instruct(text: str) -> list[Draft]:
    """Pure: the model's JSON -> drafts; malformed items are dropped, none left is BadOutput."""
    data = json_object(text, "instruct answer")
    raw_items = data.get("items")
    if not isinstance(raw_items, list):
        raise BadOutput("instruct JSON needs a list 'items'", raw=text)
    drafts = []
    for raw in raw_items:
        kind = _TYPES.get(str(raw.get("type", "")).lower()) if isinstance(raw, dict) else None
        if kind is None:
            continue
        if kind == "conversation":
            turns = [_turn("open", t) for t in raw.get("turns") or []]
            if len(turns) >= 2 and all(turns):
                drafts.append(Draft("conversation", [t for t in turns if t]))
        elif turn := _turn(kind, raw):
            drafts.append(Draft(kind, [turn]))
    if not drafts:
        raise BadOutput("the instruct answer holds no usable item", raw=text)
    return drafts


def format_judge(
    description: str, drafts: list[Draft], settings: InstructSettings
) -> tuple[ChatRequest, Template]:
    """Pure: the judge request for ``drafts`` (numbered from 1)."""
    items = [
        {
            "number": i,
            "turns": [{"question": t["question"], "answer": t["answer"]} for t in d.turns],
        }
        for i, d in enumerate(drafts, start=1)
    ]
    parts, template = render_parts(
        settings.judge_template or JUDGE_TEMPLATE, description=description.strip(), items=items
    )
    meta = {"stage": JUDGE_STAGE, "description": description.strip()}
    return build_request(parts, settings, meta=meta), template


def parse_judge(text: str, n: int) -> list[Verdict]:
    """Pure: the judge's JSON -> one verdict per item (an item without one fails)."""
    data = json_object(text, "judge answer")
    raw = data.get("verdicts")
    if not isinstance(raw, list):
        raise BadOutput("judge JSON needs a list 'verdicts'", raw=text)
    found: dict[int, Verdict] = {}
    for v in raw:
        if not isinstance(v, dict):
            continue
        try:
            number = int(v.get("item"))
        except (TypeError, ValueError):
            continue
        ok = v.get("supported") is True or str(v.get("supported")).lower() == "true"
        reason = str(v.get("reason") or "").strip() or None
        found[number] = Verdict(True) if ok else Verdict(False, f"judge: {reason or 'unsupported'}")
    return [found.get(i, Verdict(False, "the judge gave no verdict")) for i in range(1, n + 1)]


def _share(result: ChatResult, settings: InstructSettings, n: int, i: int) -> dict[str, Any]:
    """Item ``i``'s share of a call's tokens, latency and cost (the call made ``n`` items)."""
    cost = compute_cost(settings, result.input_tokens, result.output_tokens)
    return {
        "input_tokens": result.input_tokens // n + (result.input_tokens % n if i == 0 else 0),
        "output_tokens": result.output_tokens // n + (result.output_tokens % n if i == 0 else 0),
        "latency_s": result.latency_s / n,
        "cost": cost / n,
    }


def _label_items(
    context: LabelContext, settings: InstructSettings, seed: int
) -> list[VerifiedItem]:
    vocab = load_contrast_vocabulary()
    mix = InstructMix(open=0, yesno=0, choice=0, label=settings.label, conversation=0)
    return [
        VerifiedItem(
            d,
            check_item(d, "", context, vocab),
            "manifest",
            f"templates:{GENERATOR}",
            None,
            None,
            "rules",
            {"seed": seed},
        )  # fmt: skip
        for d in make_items("", mix, context, seed=seed, vocab=vocab)
    ]


def _offline(
    settings: InstructSettings, description: str, context: LabelContext, seed: int
) -> list[VerifiedItem]:
    started = time.perf_counter()
    vocab = load_contrast_vocabulary()
    drafts = make_items(description, mix_of(settings), context, seed=seed, vocab=vocab)
    latency = (time.perf_counter() - started) / max(1, len(drafts))
    return [
        VerifiedItem(
            draft=d,
            verdict=check_item(d, description, context, vocab),
            provider="offline",
            model=f"templates:{GENERATOR}",
            template_name=f"vocabulary/{vocab.name}",
            template_hash=vocab.sha256,
            verifier="rules",
            params={"mode": "templates", "seed": seed},
            latency_s=latency,
        )
        for d in drafts
    ]


async def run_instruct(
    client: LLMClient | None,
    settings: InstructSettings,
    description: str,
    context: LabelContext,
    *,
    seed: int,
    image: ImageInput | None = None,
) -> list[VerifiedItem]:
    """The tile's items, each verified. Raises the provider's :class:`~pathgen.errors.LLMError`
    (and :class:`BadOutput` for unusable JSON) when a model call fails."""
    if settings.provider == "offline":
        return _offline(settings, description, context, seed)
    if client is None:
        raise ValueError("an online instruct provider needs an LLM client")
    request, template = format_instruct(description, settings, image)
    result = await client.complete(request)
    drafts = parse_instruct(result.text)
    judge_request, judge_template = format_judge(description, drafts, settings)
    judged = await client.complete(judge_request)
    verdicts = parse_judge(judged.text, len(drafts))
    vocab = load_contrast_vocabulary()
    items = []
    for i, (draft, verdict) in enumerate(zip(drafts, verdicts, strict=True)):
        clash = [c for t in draft.turns for c in contradictions(t["answer"], description, vocab)]
        if verdict.ok and clash:
            verdict = Verdict(False, "contradicts the description: " + "; ".join(clash))
        gen, jud = (
            _share(result, settings, len(drafts), i),
            _share(judged, settings, len(drafts), i),
        )
        params = stage_params(settings, has_image=image is not None, seed=seed)
        params["judge"] = {
            "template_name": judge_template.name,
            "template_hash": judge_template.sha256,
            "input_tokens": jud["input_tokens"],
            "output_tokens": jud["output_tokens"],
            "cost": jud["cost"],
        }
        items.append(
            VerifiedItem(
                draft=draft,
                verdict=verdict,
                provider=result.provider,
                model=result.model,
                template_name=template.name,
                template_hash=template.sha256,
                verifier=f"judge:{judged.model}",
                params=params,
                input_tokens=gen["input_tokens"] + jud["input_tokens"],
                output_tokens=gen["output_tokens"] + jud["output_tokens"],
                latency_s=gen["latency_s"] + jud["latency_s"],
                cost=gen["cost"] + jud["cost"],
            )
        )
    return items + _label_items(context, settings, seed)
