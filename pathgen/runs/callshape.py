"""The paid LLM calls each caption stage (and ``instruct``: a generation and a judge call
per tile) makes, and their size in tokens, from the settings.

Pure: budgets (the worst case of a call in flight) and estimates (the expected call) both
read this. Prompt text comes from rendering the stage's template with stand-in inputs of
the expected length; images are counted by the provider's rule
(:func:`pathgen.llm.tokens.image_tokens`) at the size sent (the tile, shrunk to
``image_max_side``).

Example::

    shapes = call_shapes(settings, report_chars=600, output_tokens={"describe": 180})
    shapes["describe"][0].input_tokens
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pathgen.llm.tokens import CHARS_PER_TOKEN, image_tokens, text_tokens
from pathgen.prompts import render_parts
from pathgen.settings import InstructSettings, Settings, StageSettings

#: Degrade edits asked of the LLM (the stage's default).
DEGRADE_EDITS = 3


@dataclass(frozen=True)
class CallShape:
    """One paid call of a stage: its settings and its expected size."""

    stage: str
    settings: StageSettings
    input_tokens: int
    output_tokens: int

    def cost(self, input_tokens: int | None = None, output_tokens: int | None = None) -> float:
        """The call's price at its stage's prices (cached-prompt discounts not counted)."""
        i = self.input_tokens if input_tokens is None else input_tokens
        o = self.output_tokens if output_tokens is None else output_tokens
        return (
            i / 1000 * self.settings.price_input_per_1k
            + o / 1000 * self.settings.price_output_per_1k
        )

    @property
    def worst_cost(self) -> float:
        """The most the call can cost: its input and ``max_tokens`` of output."""
        return self.cost(output_tokens=self.settings.max_tokens)


def paid(cfg: StageSettings) -> bool:
    """Whether a stage's calls go to a provider (the offline provider runs locally)."""
    return cfg.provider != "offline"


def stage_calls(settings: Settings) -> dict[str, list[StageSettings]]:
    """Per caption stage, the settings of each provider call one of its items makes."""
    cap = settings.captioning
    out: dict[str, list[StageSettings]] = {
        "describe": [c for c in (cap.describe, *cap.describers) if paid(c)],
        "fuse": [cap.fuse] if cap.describers and paid(cap.fuse) else [],
        "degrade": [cap.degrade] if cap.degrade.mode != "rules" and paid(cap.degrade) else [],
        "revise": [cap.revise] if paid(cap.revise) else [],
        "summarize": [cap.summarize] if paid(cap.summarize) else [],
        # Online instruct: the items are written, then every answer is judged.
        "instruct": [cap.instruct] * 2 if cap.instruct.enabled and paid(cap.instruct) else [],
    }
    return {stage: calls for stage, calls in out.items() if calls}


def items_per_tile(settings: Settings) -> dict[str, int]:
    """Work items each selected tile makes in each caption stage."""
    cap = settings.captioning
    return {
        "describe": 1,
        "fuse": 1 if cap.describers else 0,
        "degrade": cap.degrade_copies,
        "revise": 1 + cap.degrade_copies,
        "summarize": 1,
        "instruct": 1 if cap.instruct.enabled else 0,
    }


def expected_output(cfg: StageSettings, observed: Mapping[str, float], stage: str) -> int:
    """Output tokens of one call: ``observed`` (stored calls) or half of ``max_tokens``."""
    if stage in observed:
        return round(observed[stage])
    return cfg.max_tokens // 2


def _prompt_tokens(template: str, image: int = 0, **context: object) -> int:
    parts, _ = render_parts(template, **context)
    return text_tokens(parts.system) + text_tokens(parts.user) + image


def call_shapes(
    settings: Settings, *, report_chars: int, output_tokens: Mapping[str, float]
) -> dict[str, list[CallShape]]:
    """The expected shape of each paid call of each caption stage.

    ``report_chars``: mean length of the slides' reports (0 without reports);
    ``output_tokens``: known mean output tokens per stage (e.g. from stored calls).
    """
    cap = settings.captioning
    out_of = {
        stage: expected_output(getattr(cap, stage), output_tokens, stage)
        for stage in ("describe", "fuse", "degrade", "revise", "summarize", "instruct")
    }
    source = out_of["fuse"] if cap.describers else out_of["describe"]
    description = "x" * (source * CHARS_PER_TOKEN)
    revised = "x" * (out_of["revise"] * CHARS_PER_TOKEN)
    report = "x" * report_chars or None
    examples = [description] * cap.few_shot_k
    shapes: dict[str, list[CallShape]] = {}
    for stage, calls in stage_calls(settings).items():
        shapes[stage] = []
        for n, cfg in enumerate(calls):
            side = min(settings.tiling.tile_size, cfg.image_max_side)
            picture = image_tokens(cfg.provider, side, side)
            name = cfg.template
            if stage == "describe":
                tokens = _prompt_tokens(
                    name or "describe_v1", picture, report=report, caption=None, examples=examples
                )
            elif stage == "fuse":
                n = 1 + len(cap.describers)
                text = "x" * (out_of["describe"] * CHARS_PER_TOKEN)
                tokens = _prompt_tokens(name or "fuse_v1", descriptions=[text] * n)
            elif stage == "degrade":
                tokens = _prompt_tokens(
                    name or "degrade_llm_v1", description=description, n_edits=DEGRADE_EDITS
                )
            elif stage == "revise":
                tokens = _prompt_tokens(
                    name or "revise_v1", picture, description=description, has_image=True
                )
            elif stage == "summarize":
                tokens = _prompt_tokens(
                    name or "summarize_v1", description=revised, max_clip_tokens=cap.max_clip_tokens
                )
            elif n == 0:  # instruct: the items
                tokens = _prompt_tokens(
                    name or "instruct_v1",
                    picture if cap.instruct.with_image else 0,
                    **_instruct_context(cap.instruct, revised),
                )
            else:  # instruct: the judge, over the items the first call wrote
                written = "x" * (out_of["instruct"] * CHARS_PER_TOKEN)
                items = [{"number": 1, "turns": [{"question": written, "answer": ""}]}]
                tokens = _prompt_tokens(
                    cap.instruct.judge_template or "instruct_judge_v1",
                    description=revised,
                    items=items,
                )
            shapes[stage].append(CallShape(stage, cfg, tokens, out_of[stage]))
    return shapes


def _instruct_context(cfg: InstructSettings, description: str) -> dict[str, object]:
    return {
        "description": description,
        "has_image": cfg.with_image,
        "n_open": cfg.open,
        "n_yesno": cfg.yesno,
        "n_choice": cfg.choice,
        "n_conversation": cfg.conversation,
        "max_turns": cfg.max_turns,
    }
