"""Config drift: which setting changes a run can take, and which would change its outputs.

A run stores the settings its outputs were made with (``runs.config``). Starting it
again with other settings is fine when the change cannot alter what the stages make
(concurrency, rate limits, timeouts, attempts, prices, where the database or data
live...): the new values are stored, and said so. A change that would make new
outputs differ from the finished ones (a model, a prompt template, a threshold) stops
the start, listing the keys and what to do: ``--redo STAGE`` for a caption stage
(which then records the stage's new settings), ``--redo select`` for the model and
selection settings (a new selection round), or a new run name.

Every key is classified here, in one table: :data:`OPERATIONAL_LEAVES` (a
:class:`~pathgen.settings.StageSettings` field that is safe in every stage) and
:data:`OPERATIONAL_KEYS` (dotted prefixes that are safe), and :data:`STAGE_OF` (the
stage whose outputs a key shapes). A key in no table counts as output-shaping for
the whole run, so a new setting is safe only once it is listed here.

Example::

    config, applied = reconcile("breast-1", run.config, settings.snapshot(), redo=[])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pathgen.errors import ConfigDrift
from pathgen.runs.graph import REDONE_WITH, redone_stages

#: Fields of any stage's LLM settings that change speed, cost accounting or where the
#: provider is reached, never what it is asked or which model answers.
OPERATIONAL_LEAVES = frozenset(
    {
        "max_concurrency",
        "requests_per_minute",
        "tokens_per_minute",
        "timeout_s",
        "max_attempts",
        "price_input_per_1k",
        "price_output_per_1k",
        "price_cached_input_per_1k",
        "max_cost_usd",
        "batch_poll_s",
        "batch_wait_s",
        "api_key_env",
        "base_url",
    }
)
#: Dotted keys (and everything below them) that never change a stage's outputs.
OPERATIONAL_KEYS = (
    "database",
    "workers",
    "run.name",
    "run.max_cost_usd",
    "run.manifest",  # a rerun may add slides
    "run.data_dir",
    "tiling.workers",
    "tiling.preview_dir",
    "model.device",
    "model.batch_size",
    "model.reader_threads",
)
#: The stage whose outputs a key shapes (the longest matching prefix wins).
STAGE_OF = {
    "tiling": "tile",
    "model": "embed",
    "selection": "select",
    "run.organ": "select",
    "captioning.describe": "describe",
    "captioning.describers": "describe",
    "captioning.few_shot_k": "describe",
    "captioning.few_shot_references": "describe",
    "captioning.fuse": "fuse",
    "captioning.degrade": "degrade",
    "captioning.degrade_copies": "degrade",
    "captioning.revise": "revise",
    "captioning.summarize": "summarize",
    "captioning.max_clip_tokens": "summarize",
    "captioning.instruct": "instruct",
}


@dataclass(frozen=True)
class Change:
    """One setting whose stored and new values differ."""

    key: str
    old: Any
    new: Any
    #: The stage whose outputs the key shapes (None: the whole run).
    stage: str | None
    #: True when the change cannot alter what the stages make.
    operational: bool


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def stage_of(key: str) -> str | None:
    """The stage whose outputs ``key`` shapes (None when it is not a stage's setting)."""
    matches = [p for p in STAGE_OF if _under(key, p)]
    return STAGE_OF[max(matches, key=len)] if matches else None


def is_operational(key: str) -> bool:
    """Whether a change of ``key`` leaves every output as it would have been."""
    if any(_under(key, p) for p in OPERATIONAL_KEYS):
        return True
    parts = key.split(".")
    in_stage = parts[0] in ("captioning", "selection") and len(parts) >= 3
    return in_stage and parts[-1] in OPERATIONAL_LEAVES


def _online_batch_switch(key: str, old: Any, new: Any) -> bool:
    """A stage's calls moving between online and its Batch API (same model and prompt).
    Outside degrade, ``mode`` says nothing else; in degrade, ``rules`` is no LLM call."""
    if not key.startswith("captioning.") or not key.endswith(".mode"):
        return False
    if stage_of(key) == "degrade":
        return {old, new} == {"llm", "batch"}
    return True


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "l": [{"c": 2}]}`` → ``{"a.b": 1, "l.0.c": 2}`` (JSON values)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        out = {prefix: len(data)}  # the number of entries is a setting of its own
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: data}


def changes(stored: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every key whose value differs between two settings snapshots, sorted."""
    old_flat, new_flat = flatten(stored), flatten(new)
    out = []
    for key in sorted(set(old_flat) | set(new_flat)):
        old, value = old_flat.get(key), new_flat.get(key)
        if old != value:
            operational = is_operational(key) or _online_batch_switch(key, old, value)
            out.append(Change(key, old, value, stage_of(key), operational))
    return out


def output_digest_source(snapshot: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The settings that shape outputs and differ from ``defaults``, as canonical JSON
    (for a run id derived from them: a setting added to pathgen later, with its default,
    leaves the id as it was)."""
    base = flatten(defaults)
    kept = {
        k: v
        for k, v in flatten(snapshot).items()
        if not is_operational(k) and (k not in base or base[k] != v)
    }
    return json.dumps(kept, sort_keys=True)


#: Stage settings a redo compares per output: an output made with the same values is
#: reused (see the caption handler), so a change of any other setting needs ``--force``.
COMPARED_ON_REDO = frozenset({"provider", "model", "template", "mode"})


def _advice(blocking: list[Change], caption_stages: Sequence[str]) -> str:
    stages = {c.stage for c in blocking}
    new_run = "start a separate run (set run.name or pass --run-id NEW), or put the old values back"
    redoable = set(caption_stages) | set(REDONE_WITH["select"])
    if stages and stages <= redoable:
        named = ",".join(
            (["select"] if stages & set(REDONE_WITH["select"]) else [])
            + [s for s in caption_stages if s in stages]
        )
        return (
            f"to make new outputs with these settings, rerun with --redo {named} "
            f"(each stage's new outputs requeue the stages after it); or {new_run}"
        )
    which = ", ".join(sorted(s or "the whole run" for s in stages))
    return f"{which}: finished work cannot be redone in place: {new_run}"


def reconcile(
    run_id: str,
    stored: dict[str, Any],
    new: dict[str, Any],
    *,
    redo: Sequence[str] = (),
    force: bool = False,
    caption_stages: Sequence[str] = (),
) -> tuple[dict[str, Any], list[Change]]:
    """The settings to store for a restarted run, and the changes that brings.

    Operational changes are taken; changes of a stage in ``redo`` (which makes new
    outputs) are taken; any other change raises :class:`ConfigDrift` naming the keys.
    A redone stage's change the redo does not compare per output (e.g. temperature)
    needs ``force``, or the old outputs would be reused under the new settings.
    """
    found = changes(stored, new)
    redone = redone_stages(redo)
    blocking = [c for c in found if not c.operational and c.stage not in redone]
    if blocking:
        raise ConfigDrift(
            run_id,
            [(c.key, c.old, c.new) for c in blocking],
            _advice(blocking, caption_stages),
        )
    unseen = [
        c
        for c in found
        if not c.operational
        and not force
        and c.stage not in REDONE_WITH["select"]  # a new selection round reuses nothing stale
        and c.key.split(".")[-1] not in COMPARED_ON_REDO
    ]
    if unseen:
        raise ConfigDrift(
            run_id,
            [(c.key, c.old, c.new) for c in unseen],
            "a redo reuses outputs made with the same provider, model and prompt template, "
            "so these changes would not show: add --force to make new outputs",
        )
    return (new if found else stored), found
