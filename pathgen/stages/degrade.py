"""Degrade stage: a wrong copy of a description plus the list of edits that made it wrong.

``settings.mode == "rules"`` (default) uses :mod:`pathgen.stages.degrade_rules` and calls
no model; ``"llm"`` asks the model (template ``degrade_llm_v1``) for JSON with the
degraded text and its edits, parsed tolerantly (:func:`parse_degrade_llm`).

Example::

    out = await run_degrade(client, settings.captioning.degrade, description, seed=42)
    out.text, out.edits
"""

from __future__ import annotations

import time
from typing import Any

from pathgen.errors import BadOutput
from pathgen.llm.base import ChatRequest, LLMClient
from pathgen.prompts import Template, render_parts
from pathgen.settings import StageSettings
from pathgen.stages.degrade_rules import degrade_rules
from pathgen.stages.output import Parsed, StageOutput, build_request, call_stage, stage_params
from pathgen.stages.text import json_object, split_sentences, tokens
from pathgen.stages.vocabulary import load_contrast_vocabulary

STAGE = "degrade"
DEFAULT_TEMPLATE = "degrade_llm_v1"
_OPS = {"add", "delete", "modify"}


def format_degrade_llm(
    description: str, settings: StageSettings, *, n_edits: int, seed: int
) -> tuple[ChatRequest, Template]:
    """Pure: description -> request asking the model for ``n_edits`` errors as JSON."""
    parts, template = render_parts(
        settings.template or DEFAULT_TEMPLATE, description=description, n_edits=n_edits
    )
    meta = {"stage": STAGE, "description": description, "n_edits": n_edits, "seed": seed}
    return build_request(parts, settings, meta=meta), template


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text if text and text.lower() not in {"null", "none"} else None


def _locate(sentence: str | None, sentences: list[str]) -> int | None:
    if not sentence:
        return None
    want = tokens(sentence)
    for i, s in enumerate(sentences):
        if tokens(s) == want:
            return i
    best, best_score = None, 0.0
    for i, s in enumerate(sentences):
        have = set(tokens(s))
        score = len(have & set(want)) / max(1, len(set(want) | have))
        if score > best_score:
            best, best_score = i, score
    return best if best_score >= 0.5 else None


def _map_to_original(
    deg_sents: list[str], orig_sents: list[str], edits: list[dict[str, Any]]
) -> dict[int, int]:
    """Degraded sentence index -> original index for sentences kept or modified (not adds)."""
    added = {tuple(tokens(e["degraded"])) for e in edits if e["op"] == "add" and e["degraded"]}
    modified = {
        tuple(tokens(e["degraded"])): e["sentence_index"]
        for e in edits
        if e["op"] == "modify" and e["degraded"] and e["sentence_index"] is not None
    }
    exact = {tuple(tokens(s)): i for i, s in enumerate(orig_sents)}
    mapped: dict[int, int] = {}
    for j, s in enumerate(deg_sents):
        key = tuple(tokens(s))
        if key in added:
            continue
        i = modified.get(key, exact.get(key))
        if i is None:
            i = _locate(s, orig_sents)
        if i is not None:
            mapped[j] = i
    return mapped


def parse_degrade_llm(text: str, original: str) -> Parsed:
    """Pure: the model's JSON -> degraded text and normalised edit dicts.

    Accepts code fences, prose around the JSON and trailing commas. ``sentence_index`` is
    located in the original (delete/modify) or counted as in rule mode (add: the original
    sentence it precedes). Raises BadOutput (with the raw text) when unusable.
    """
    data = json_object(text, "degrade answer")
    degraded = _opt_str(data.get("degraded") or data.get("degraded_text") or data.get("text"))
    raw_edits = data.get("edits")
    if not degraded or not isinstance(raw_edits, list) or not raw_edits:
        raise BadOutput("degrade JSON needs a non-empty 'degraded' and a list 'edits'", raw=text)
    if tokens(degraded) == tokens(original):
        raise BadOutput("the degraded text is identical to the original", raw=text)
    orig_sents, deg_sents = split_sentences(original), split_sentences(degraded)
    edits = []
    for item in raw_edits:
        if not isinstance(item, dict) or str(item.get("op", "")).lower() not in _OPS:
            raise BadOutput(
                f"degrade edit has no valid 'op' (add/delete/modify): {item!r}", raw=text
            )
        edits.append(
            {
                "op": str(item["op"]).lower(),
                "sentence_index": None,
                "original": _opt_str(item.get("original")),
                "degraded": _opt_str(item.get("degraded")),
                "term_from": _opt_str(item.get("term_from")),
                "term_to": _opt_str(item.get("term_to")),
            }
        )
    for edit in edits:
        if edit["op"] != "add":
            edit["sentence_index"] = _locate(edit["original"], orig_sents)
    mapped = _map_to_original(deg_sents, orig_sents, edits)
    for edit in edits:
        pos = _locate(edit["degraded"], deg_sents) if edit["op"] == "add" else None
        if pos is not None:
            before = [mapped[j] for j in range(pos) if j in mapped]
            edit["sentence_index"] = max(before) + 1 if before else 0
    return Parsed(text=" ".join(degraded.split()), edits=edits)


def _rules_output(
    settings: StageSettings, description: str, seed: int, n_edits: int
) -> StageOutput:
    started = time.perf_counter()
    vocab = load_contrast_vocabulary()
    result = degrade_rules(description, seed=seed, n_edits=n_edits, vocab=vocab)
    ok = bool(result.edits)
    return StageOutput(
        stage=STAGE,
        text=result.text if ok else "",
        status="ok" if ok else "failed",
        error=None if ok else "no edit possible: the description is empty or too short",
        provider="rules",
        model=f"rules:{vocab.name}",
        template_name=f"vocabulary/{vocab.name}",
        template_hash=vocab.sha256,
        params={"mode": "rules", "seed": seed, "n_edits": n_edits},
        latency_s=time.perf_counter() - started,
        edits=result.edits,
        attempts=1,
    )


async def run_degrade(
    client: LLMClient | None,
    settings: StageSettings,
    description: str,
    *,
    seed: int,
    n_edits: int = 3,
) -> StageOutput:
    """Degrade ``description`` by rules or by the LLM, according to ``settings.mode``.

    ``seed`` should come from the tile/revision key (:func:`seed_from_key`) so reruns give
    the same edits. ``client`` may be ``None`` in rules mode.
    """
    if settings.mode == "rules":
        return _rules_output(settings, description, seed, n_edits)
    if client is None:
        raise ValueError("degrade in 'llm' mode needs an LLM client")
    request, template = format_degrade_llm(description, settings, n_edits=n_edits, seed=seed)
    params = stage_params(settings, seed=seed, n_edits=n_edits)
    output, _ = await call_stage(
        STAGE,
        client,
        settings,
        request,
        template,
        lambda text: parse_degrade_llm(text, description),
        params,
    )
    return output
