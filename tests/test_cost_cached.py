"""Cached prompt tokens: templates put static text first, providers' cached-token usage is
read through the official SDKs, stored per revision and priced at its own rate."""

from __future__ import annotations

import pytest
from PIL import Image

from pathgen.llm.factory import make_client
from pathgen.llm.tokens import image_tokens, text_tokens
from pathgen.prompts import render_parts
from pathgen.settings import StageSettings
from pathgen.stages import DescribeInput, compute_cost, run_describe
from pathgen.testing.llm_server import run_mock_server

#: Per-tile variables of each caption template, and the other variables it needs.
PER_TILE = {
    "describe_v1": ("report", {"caption": None, "examples": []}),
    "revise_v1": ("description", {"has_image": True}),
    "summarize_v1": ("description", {"max_clip_tokens": 77}),
    "degrade_llm_v1": ("description", {"n_edits": 3}),
    "fuse_v1": ("descriptions", {}),
}


@pytest.mark.parametrize("name", sorted(PER_TILE))
def test_per_tile_content_comes_after_the_static_instructions(name: str) -> None:
    var, rest = PER_TILE[name]
    first, second = ("Tile one: solid nests.", "Tile two: glands.")
    values = ([first], [second]) if var == "descriptions" else (first, second)
    a, _ = render_parts(name, **{var: values[0]}, **rest)
    b, _ = render_parts(name, **{var: values[1]}, **rest)
    assert a.system == b.system and a.system
    assert a.user.rstrip().endswith(first) and b.user.rstrip().endswith(second)
    # everything before the tile's own text is the same for every tile: a cacheable prefix
    assert a.user[: a.user.index(first)] == b.user[: b.user.index(second)]


def _settings(provider: str, base_url: str, **kw) -> StageSettings:
    return StageSettings(
        provider=provider,
        model="mock-vlm",
        base_url=base_url,
        api_key_env="",
        max_attempts=1,
        price_input_per_1k=1.0,
        price_output_per_1k=2.0,
        **kw,
    )


@pytest.mark.parametrize("provider", ["openai", "mistral"])
async def test_repeated_prefix_is_reported_as_cached_and_priced(provider: str) -> None:
    report = "Invasive ductal carcinoma, grade 2. " * 40  # long shared context
    with run_mock_server() as srv:
        cfg = _settings(provider, srv.base_url, price_cached_input_per_1k=0.1)
        client = make_client(cfg)
        try:
            outs = [
                await run_describe(
                    client, cfg, DescribeInput(Image.new("RGB", (64, 64), color), report=report)
                )
                for color in ("white", "pink")
            ]
        finally:
            await client.aclose()
    first, second = outs
    assert first.ok and second.ok
    assert first.cached_input_tokens == 0
    assert first.input_tokens == second.input_tokens
    image = image_tokens(provider, 64, 64)
    # the system message and the user text (instructions + report) hit, the new image not
    assert second.cached_input_tokens == second.input_tokens - image
    assert second.cached_input_tokens > text_tokens(report) > 0
    uncached = second.input_tokens - second.cached_input_tokens
    expected = uncached / 1000 * 1.0 + second.cached_input_tokens / 1000 * 0.1
    expected += second.output_tokens / 1000 * 2.0
    assert second.cost == pytest.approx(expected)
    assert second.cost < first.cost


async def test_no_cache_hit_when_the_server_caches_nothing() -> None:
    with run_mock_server(prompt_cache=False) as srv:
        cfg = _settings("openai", srv.base_url)
        client = make_client(cfg)
        try:
            for _ in range(2):
                out = await run_describe(client, cfg, DescribeInput(Image.new("RGB", (64, 64))))
                assert out.ok and out.cached_input_tokens == 0
        finally:
            await client.aclose()


def test_cached_tokens_default_to_the_input_price() -> None:
    cfg = StageSettings(price_input_per_1k=1.0, price_output_per_1k=0.0)
    assert compute_cost(cfg, 1000, 0, cached_input_tokens=600) == pytest.approx(1.0)
    cheap = cfg.model_copy(update={"price_cached_input_per_1k": 0.5})
    assert compute_cost(cheap, 1000, 0, cached_input_tokens=600) == pytest.approx(0.4 + 0.3)
