"""The instruct stage's pure parts: template-made items, the rule check, JSON parsing, judge."""

from __future__ import annotations

import json

import pytest

from pathgen.errors import BadOutput
from pathgen.settings import InstructSettings, Settings
from pathgen.stages.instruct import parse_instruct, parse_judge, run_instruct
from pathgen.stages.instruct_templates import Draft, InstructMix, LabelContext, make_items
from pathgen.stages.instruct_verify import check_item
from tests.test_stages_llm import FakeLLM

DESCRIPTION = (
    "The tissue shows an infiltrating malignant epithelial tumour. The cells grow in solid "
    "sheets. The tumour appears poorly differentiated. The nuclei show marked nuclear "
    "pleomorphism. Desmoplastic stroma surrounds the nests. A dense lymphocytic infiltrate "
    "is present at the edge. Focal necrosis is present."
)
CONTEXT = LabelContext("tumour", "breast", ("normal", "tumour"), ("breast",))


def _turn(draft: Draft) -> dict:
    return draft.turns[0]


def test_template_items_cover_every_type_and_pass_the_rule_check() -> None:
    drafts = make_items(DESCRIPTION, InstructMix(label=2), CONTEXT, seed=3)
    kinds = [d.kind for d in drafts]
    assert kinds.count("open") == 2 and kinds.count("yesno") == 2
    assert {"choice", "label", "conversation"} <= set(kinds)
    assert all(check_item(d, DESCRIPTION, CONTEXT).ok for d in drafts)
    yesno = sorted(_turn(d)["answer_label"] for d in drafts if d.kind == "yesno")
    assert yesno == ["no", "yes"]
    conversation = next(d for d in drafts if d.kind == "conversation")
    assert 2 <= len(conversation.turns) <= 4
    choice = _turn(next(d for d in drafts if d.kind == "choice"))
    right = choice["options"]["ABCD".index(choice["answer_letter"])]
    assert right.lower() in DESCRIPTION.lower()
    labels = {_turn(d)["field"]: _turn(d)["answer"] for d in drafts if d.kind == "label"}
    assert labels == {"label": "tumour", "organ": "breast"}
    assert make_items(DESCRIPTION, InstructMix(), CONTEXT, seed=3) == make_items(
        DESCRIPTION, InstructMix(), CONTEXT, seed=3
    )


@pytest.mark.parametrize(
    ("turn", "reason"),
    [
        (
            {"kind": "yesno", "term": "desmoplastic stroma", "answer_label": "no",
             "question": "Does the image show this feature: desmoplastic stroma?",
             "answer": "No, desmoplastic stroma is not seen in this image."},
            "mentions 'desmoplastic stroma'",
        ),
        (
            {"kind": "yesno", "term": "well differentiated", "answer_label": "yes",
             "question": "Is this feature present in the image: well differentiated?",
             "answer": "Yes. The tumour appears well differentiated."},
            "contradicts",
        ),
        (
            {"kind": "open", "question": "Describe the stroma.",
             "answer": "Loose oedematous stroma surrounds the nests."},
            "contradicts",
        ),
        (
            {"kind": "open", "question": "Describe the vessels.",
             "answer": "Thick-walled vessels with amyloid deposits are scattered throughout."},
            "not in the description",
        ),
        (
            {"kind": "choice", "question": "Which?", "answer_letter": "B", "answer": "B",
             "options": ["desmoplastic stroma", "loose oedematous stroma"]},
            "not in the description",
        ),
        (
            {"kind": "label", "field": "label", "question": "Category?", "answer": "normal"},
            "not the manifest label",
        ),
    ],
)  # fmt: skip
def test_planted_contradicting_answers_fail_verification(turn: dict, reason: str) -> None:
    verdict = check_item(Draft(turn["kind"], [turn]), DESCRIPTION, CONTEXT)
    assert not verdict.ok and reason in verdict.reason


def test_yes_no_balance_holds_over_many_tiles() -> None:
    labels = []
    for seed in range(40):
        for d in make_items(DESCRIPTION, InstructMix(yesno=3), CONTEXT, seed=seed):
            if d.kind == "yesno":
                labels.append(_turn(d)["answer_label"])
    assert 0.45 <= labels.count("yes") / len(labels) <= 0.55


def test_parse_instruct_is_tolerant_and_strict_about_nothing_usable() -> None:
    answer = (
        "Sure! ```json\n"
        + json.dumps(
            {
                "items": [
                    {"type": "open", "question": "What is seen?", "answer": "Solid sheets."},
                    {"type": "yesno", "question": "Necrosis?", "answer": "Yes. Focal necrosis."},
                    {"type": "yesno", "question": "Odd?", "answer": "Maybe"},
                    {"type": "choice", "question": "Q?", "options": ["a", "b"], "answer": "b"},
                    {"type": "conversation", "turns": [{"question": "A?", "answer": "B."}] * 2},
                    {"type": "poem", "question": "x", "answer": "y"},
                ]
            }
        )
        + ",\n```"
    )
    drafts = parse_instruct(answer)
    assert [d.kind for d in drafts] == ["open", "yesno", "choice", "conversation"]
    assert drafts[1].turns[0]["answer_label"] == "yes"
    assert drafts[2].turns[0]["answer_letter"] == "B"
    with pytest.raises(BadOutput):
        parse_instruct('{"items": [{"type": "poem"}]}')
    verdicts = parse_judge('{"verdicts": [{"item": 2, "supported": false, "reason": "no"}]}', 3)
    assert [v.ok for v in verdicts] == [False, False, False]
    assert verdicts[0].reason == "the judge gave no verdict" and "judge: no" in verdicts[1].reason


async def test_online_items_are_judged_with_provenance() -> None:
    items = {
        "items": [
            {"type": "open", "question": "Stroma?", "answer": "Desmoplastic stroma."},
            {"type": "open", "question": "Grade?", "answer": "It is well differentiated."},
            {"type": "yesno", "question": "Necrosis?", "answer": "No."},
        ]
    }
    verdicts = {
        "verdicts": [
            {"item": 1, "supported": True},
            {"item": 2, "supported": True},  # the rule guard still catches the contradiction
            {"item": 3, "supported": False, "reason": "necrosis is present"},
        ]
    }
    fake = FakeLLM(json.dumps(items), json.dumps(verdicts))
    cfg = InstructSettings(provider="openai", model="m", price_input_per_1k=1.0, label=1)
    out = await run_instruct(fake, cfg, DESCRIPTION, CONTEXT, seed=1)
    assert [(v.draft.kind, v.verdict.ok) for v in out] == [
        ("open", True),
        ("open", False),
        ("yesno", False),
        ("label", True),
    ]
    assert "contradicts" in out[1].verdict.reason and "necrosis" in out[2].verdict.reason
    assert out[0].template_name == "instruct_v1" and out[0].verifier == "judge:fake-vlm-1"
    assert out[0].params["judge"]["template_name"] == "instruct_judge_v1"
    assert sum(v.input_tokens for v in out[:3]) == 200 and out[0].cost > 0
    assert fake.requests[0].meta["stage"] == "instruct"
    assert "Desmoplastic stroma" in fake.requests[1].messages[-1].text


def test_instruct_settings_are_classified_for_drift() -> None:
    from pathgen.errors import ConfigDrift
    from pathgen.runs.drift import is_operational, reconcile, stage_of

    assert stage_of("captioning.instruct.yesno") == "instruct"
    assert stage_of("captioning.instruct.enabled") == "instruct"
    assert is_operational("captioning.instruct.max_concurrency")
    assert not is_operational("captioning.instruct.judge_template")
    old = Settings().snapshot()
    new = Settings.model_validate({"captioning": {"instruct": {"enabled": True}}}).snapshot()
    with pytest.raises(ConfigDrift, match="--redo instruct"):
        reconcile("r", old, new, caption_stages=("summarize", "instruct"))
    assert reconcile("r", old, new, redo=["instruct"], force=True)[0] == new


async def test_preflight_renders_the_instruct_templates() -> None:
    from pathgen.errors import CannotStart
    from pathgen.runs.preflight import preflight

    online = {"enabled": True, "provider": "openai", "model": "m", "api_key_env": ""}
    good = Settings.model_validate({"captioning": {"instruct": online}})
    await preflight(good, ["instruct"])
    bad = Settings.model_validate(
        {"captioning": {"instruct": {**online, "judge_template": "no_such_judge_v9"}}}
    )
    with pytest.raises(CannotStart) as err:
        await preflight(bad, ["instruct"])
    assert err.value.problems[0][:2] == ("instruct", "captioning.instruct.template")
    assert "no_such_judge_v9" in err.value.problems[0][2]
