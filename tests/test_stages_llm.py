"""Stage runners driven by an in-process fake LLMClient: output contracts and provenance."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from pathgen.errors import BadOutput, ProviderError, RateLimited
from pathgen.llm.base import ChatRequest, ChatResult, LLMClient
from pathgen.prompts import load_template
from pathgen.settings import StageSettings
from pathgen.stages import (
    DescribeInput,
    parse_describe,
    run_degrade,
    run_describe,
    run_revise,
    run_summarize,
)

DESCRIPTION = (
    "The tissue shows an infiltrating carcinoma. The tumour is well differentiated with "
    "glandular architecture. Mitotic figures are rare. Necrosis is absent."
)


class FakeLLM:
    """Answers with scripted replies (text or an exception) and records each request."""

    provider = "fake"

    def __init__(
        self, *replies: str | Exception, input_tokens: int = 100, finish: str = "stop"
    ) -> None:
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []
        self.input_tokens = input_tokens
        self.finish = finish

    async def complete(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return ChatResult(
            text=reply,
            model="fake-vlm-1",
            provider=self.provider,
            input_tokens=self.input_tokens,
            output_tokens=len(reply.split()),
            latency_s=0.25,
            finish_reason=self.finish,
            attempts=2,
        )

    async def aclose(self) -> None:
        return None


def _tile() -> Image.Image:
    return Image.new("RGB", (900, 600), (200, 120, 180))


def _settings(**kw) -> StageSettings:
    return StageSettings(provider="openai", model="gpt-test", **kw)


def test_fake_is_an_llm_client() -> None:
    assert isinstance(FakeLLM(), LLMClient)


async def test_describe_contract_and_provenance() -> None:
    reply = (
        "Sure, here is a detailed description:\n\n## Morphology\n"
        "**The tissue** shows sheets of atypical epithelial cells.\n"
        "- Nuclei are pleomorphic with prominent nucleoli.\n"
        "Let me know if you need anything else."
    )
    client = FakeLLM(reply)
    settings = _settings(price_input_per_1k=2.0, price_output_per_1k=10.0, image_max_side=300)
    out = await run_describe(client, settings, DescribeInput(image=_tile(), report="IDC."))
    assert out.status == "ok" and out.error is None
    assert out.text == (
        "The tissue shows sheets of atypical epithelial cells. "
        "Nuclei are pleomorphic with prominent nucleoli."
    )
    template = load_template("describe_v1")
    assert (out.template_name, out.template_hash) == ("describe_v1", template.sha256)
    assert (out.provider, out.model, out.attempts) == ("fake", "fake-vlm-1", 2)
    assert out.finish_reason == "stop"
    assert out.input_tokens == 100 and out.output_tokens == len(reply.split())
    assert out.cost == pytest.approx(100 / 1000 * 2.0 + len(reply.split()) / 1000 * 10.0)
    assert out.params["temperature"] == 0.2 and out.params["has_report"] is True
    request = client.requests[0]
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.meta["stage"] == "describe" and request.model == "gpt-test"
    (part,) = request.messages[1].images
    assert max(Image.open(io.BytesIO(part.jpeg)).size) == 300
    assert "IDC." in request.messages[1].text


@pytest.mark.parametrize(
    "reply",
    [
        "I'm sorry, but I cannot analyze medical images.",
        "I cannot provide a diagnosis from this image.",
        "As an AI, I am unable to view images.",
        "   ",
    ],
)
async def test_describe_refusal_is_a_failed_output_with_raw(reply: str) -> None:
    out = await run_describe(FakeLLM(reply), _settings(), DescribeInput(image=_tile()))
    assert out.status == "failed" and out.text == ""
    assert out.error.startswith("BadOutput:")
    assert out.raw == reply
    assert out.template_name == "describe_v1" and out.provider == "fake"


def test_parse_describe_keeps_negative_findings() -> None:
    text = "Mitotic activity cannot be assessed reliably in this small field of view."
    assert parse_describe(text).text == text
    with pytest.raises(BadOutput):
        parse_describe("Tissue.")


@pytest.mark.parametrize(
    "error", [ProviderError("HTTP 503 from provider"), RateLimited("429 quota", retry_after=3)]
)
async def test_provider_errors_become_failed_outputs(error: Exception) -> None:
    out = await run_revise(FakeLLM(error), _settings(), DESCRIPTION)
    assert out.status == "failed"
    assert type(error).__name__ in out.error and str(error) in out.error
    assert out.template_name == "revise_v1" and out.model == "gpt-test"


async def test_revise_with_and_without_image() -> None:
    client = FakeLLM("Corrected description: " + DESCRIPTION, DESCRIPTION)
    with_image = await run_revise(
        client, _settings(), DESCRIPTION, image=_tile(), input_kind="degraded"
    )
    assert with_image.text == DESCRIPTION and with_image.params["input_kind"] == "degraded"
    without = await run_revise(client, _settings(), DESCRIPTION)
    assert without.ok
    first, second = client.requests
    assert first.messages[-1].images and not second.messages[-1].images
    assert "Compare the description below with the image" in first.messages[-1].text
    assert "Compare" not in second.messages[-1].text
    assert first.meta == {"stage": "revise", "description": DESCRIPTION}


def _words_count(text: str) -> int:
    return len(text.split()) + 2


async def test_summary_that_fits_needs_no_retry() -> None:
    client = FakeLLM('"Caption: Well differentiated adenocarcinoma with rare mitoses."')
    out = await run_summarize(client, _settings(), DESCRIPTION, _words_count, max_clip_tokens=20)
    assert out.ok and out.text == "Well differentiated adenocarcinoma with rare mitoses."
    assert out.metrics == {"clip_tokens": 8, "strict_retry": False}
    assert len(client.requests) == 1 and out.template_name == "summarize_v1"


async def test_too_long_summary_gets_one_strict_retry_then_fails() -> None:
    long = " ".join(["word"] * 30) + "."
    client = FakeLLM(long, long, "never used")
    out = await run_summarize(client, _settings(), DESCRIPTION, _words_count, max_clip_tokens=20)
    assert len(client.requests) == 2
    assert client.replies == ["never used"]
    assert out.status == "failed" and out.text == ""
    assert out.error == "caption is 32 tokens, limit 20"
    assert out.raw == long
    strict = load_template("summarize_strict_v1")
    assert (out.template_name, out.template_hash) == ("summarize_strict_v1", strict.sha256)
    assert "32 tokens" in client.requests[1].messages[-1].text
    assert client.requests[1].meta["strict"] is True
    assert out.input_tokens == 200 and out.attempts == 4
    assert out.metrics["first_clip_tokens"] == 32 and out.metrics["strict_retry"] is True


async def test_strict_retry_that_fits_is_ok() -> None:
    client = FakeLLM(" ".join(["word"] * 30) + ".", "Short caption of carcinoma.")
    out = await run_summarize(client, _settings(), DESCRIPTION, _words_count, max_clip_tokens=20)
    assert out.ok and out.text == "Short caption of carcinoma."
    assert out.metrics["clip_tokens"] == 6 and out.template_name == "summarize_strict_v1"
    assert out.metrics["first_template_name"] == "summarize_v1"


async def test_degrade_llm_mode_parses_tolerantly() -> None:
    degraded = (
        DESCRIPTION.replace("well differentiated", "poorly differentiated").replace(
            " Mitotic figures are rare.", ""
        )
        + " Perineural invasion is identified."
    )
    payload = {
        "degraded": degraded,
        "edits": [
            {
                "op": "modify",
                "original": "The tumour is well differentiated with glandular architecture.",
                "degraded": "The tumour is poorly differentiated with glandular architecture.",
                "term_from": "well differentiated",
                "term_to": "poorly differentiated",
            },
            {"op": "delete", "original": "Mitotic figures are rare.", "degraded": None},
            {"op": "ADD", "original": "null", "degraded": "Perineural invasion is identified."},
        ],
    }
    reply = "Here you go:\n```json\n" + json.dumps(payload)[:-1] + ",}\n```"
    settings = _settings(mode="llm")
    client = FakeLLM(reply)
    out = await run_degrade(client, settings, DESCRIPTION, seed=5, n_edits=3)
    assert out.ok and out.text == degraded
    assert [e["op"] for e in out.edits] == ["modify", "delete", "add"]
    assert [e["sentence_index"] for e in out.edits] == [1, 2, 4]
    assert out.edits[2]["original"] is None
    assert out.template_name == "degrade_llm_v1"
    assert client.requests[0].meta["n_edits"] == 3
    assert "exactly 3 errors" in client.requests[0].messages[-1].text


@pytest.mark.parametrize(
    "reply",
    [
        "I cannot do that.",
        '{"degraded": "", "edits": []}',
        json.dumps({"degraded": DESCRIPTION, "edits": [{"op": "add"}]}),
        json.dumps({"degraded": "Changed text here.", "edits": [{"op": "swap"}]}),
    ],
)
async def test_degrade_llm_malformed_is_failed(reply: str) -> None:
    out = await run_degrade(FakeLLM(reply), _settings(mode="llm"), DESCRIPTION, seed=1)
    assert out.status == "failed" and out.error.startswith("BadOutput:")
    assert out.raw == reply


async def test_answer_cut_at_max_tokens_is_marked_in_the_revision_params() -> None:
    from pathgen.runs.handlers.caption import _revision
    from pathgen.runs.queue import Claimed

    client = FakeLLM(DESCRIPTION, finish="length")
    out = await run_describe(client, _settings(), DescribeInput(image=_tile()))
    assert out.status == "ok" and out.finish_reason == "length"
    item = Claimed(1, "run-1", "describe", "k", {}, 1, 3, "me")
    rev = _revision(item, 7, out, parent_id=None, branch="caption")
    assert rev.params["finish_reason"] == "length"
