"""LLM-written retrieval prompts: asked once per run and organ, stored, used by selection."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from pathgen.errors import ConfigError
from pathgen.runs.manifest import read_manifest
from pathgen.runs.pipeline import run_pipeline
from pathgen.settings import load_settings
from pathgen.store.engine import make_engine, session_scope
from pathgen.store.models import RetrievalPrompt, Selection
from pathgen.testing.llm_server import run_mock_server
from tests.pipeline_helpers import demo_template, pipeline_config

pytestmark = pytest.mark.slow

ANSWER = "\n".join(
    [
        "Here are the prompts:",
        "1. Invasive carcinoma nests – irregular nests of atypical cells in desmoplastic stroma",
        "2. Comedo necrosis – central eosinophilic necrotic debris within expanded ducts",
        "3. Tumour-infiltrating lymphocytes – small dark lymphocytes between tumour cells",
    ]
)


async def test_llm_prompts_are_written_once_and_used(tmp_path: Path) -> None:
    template = demo_template(tmp_path / "template")
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    with run_mock_server(latency=0.01, replies=[("retrieval prompts", ANSWER)]) as srv:
        extra = (
            f'[selection.llm]\nprovider = "openai"\nmodel = "writer"\nbase_url = "{srv.base_url}"\n'
            'api_key_env = ""\n'
        )
        config = pipeline_config(template, tmp_path / "w", db_url, extra)
        config.write_text(
            config.read_text().replace("[selection]\n", "[selection]\nllm_prompts = true\n")
        )
        settings = load_settings(config)
        summary = await run_pipeline(
            settings, read_manifest(settings.run.manifest), show_progress=False
        )
        asked = [r for r in srv.requests() if "retrieval prompts" in str(r.body)]
    assert summary.outcome.finished
    assert len(asked) == 1, "both demo slides are breast: one call, then the cache"
    engine = make_engine(db_url)
    try:
        async with session_scope(engine) as s:
            llm = list(
                await s.scalars(select(RetrievalPrompt).where(RetrievalPrompt.source == "llm"))
            )
            chosen = set(await s.scalars(select(Selection.prompt_key)))
    finally:
        await engine.dispose()
    assert len(llm) == 3 and {p.organ for p in llm} == {"breast"}
    assert any("Comedo necrosis" in p.text for p in llm)
    assert chosen  # attribute scores were computed over library + LLM prompts


def test_llm_prompts_need_a_real_provider(tmp_path: Path) -> None:
    cfg = tmp_path / "pathgen.toml"
    cfg.write_text("[selection]\nllm_prompts = true\n")
    with pytest.raises(ConfigError, match=r"selection: llm_prompts needs an LLM"):
        load_settings(cfg)
