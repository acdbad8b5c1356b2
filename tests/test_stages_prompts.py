"""Prompt templates: loading by name, sha256 provenance, strict variables, system/user parts."""

from __future__ import annotations

import hashlib

import pytest

from pathgen.errors import ConfigError
from pathgen.prompts import default_prompts_dir, load_template, render, render_parts

CAPTION_TEMPLATES = [
    "describe_v1",
    "revise_v1",
    "summarize_v1",
    "summarize_strict_v1",
    "degrade_llm_v1",
    "organ_prompts_v1",
]


@pytest.mark.parametrize("name", CAPTION_TEMPLATES)
def test_repo_templates_load_with_their_hash(name: str) -> None:
    template = load_template(name)
    path = default_prompts_dir() / f"{name}.jinja2"
    assert template.name == name
    assert template.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_template(f"{name}.jinja2").sha256 == template.sha256


def test_parts_split_system_and_user(tmp_path) -> None:
    (tmp_path / "t_v1.jinja2").write_text(
        "{% block system %}You are {{ who }}.{% endblock %}\n"
        "{% block user %}Describe {{ what }}.{% endblock %}\n"
    )
    parts, template = render_parts("t_v1", prompts_dir=tmp_path, who="a pathologist", what="it")
    assert parts.system == "You are a pathologist."
    assert parts.user == "Describe it."
    text, _ = render("t_v1", prompts_dir=tmp_path, who="x", what="y")
    assert text == "You are x.\n\nDescribe y."
    assert template.path == tmp_path / "t_v1.jinja2"


def test_template_without_blocks_is_all_user(tmp_path) -> None:
    (tmp_path / "plain.jinja2").write_text("Hello {{ name }}")
    parts, _ = render_parts("plain", prompts_dir=tmp_path, name="Ann")
    assert parts == type(parts)(system="", user="Hello Ann")


def test_missing_variable_names_the_template(tmp_path) -> None:
    (tmp_path / "needs_v2.jinja2").write_text("{% block user %}{{ description }}{% endblock %}")
    with pytest.raises(ConfigError, match="needs_v2.*description"):
        render_parts("needs_v2", prompts_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs_v2"):
        render("needs_v2", prompts_dir=tmp_path)


def test_missing_template_says_where(tmp_path) -> None:
    with pytest.raises(ConfigError, match="nope_v1.*not found"):
        load_template("nope_v1", prompts_dir=tmp_path)


def test_hash_changes_with_content(tmp_path) -> None:
    (tmp_path / "h.jinja2").write_text("A")
    first = load_template("h", prompts_dir=tmp_path).sha256
    (tmp_path / "h.jinja2").write_text("B")
    assert load_template("h", prompts_dir=tmp_path).sha256 != first


def test_describe_prompt_context_is_optional() -> None:
    bare, _ = render_parts("describe_v1", report=None, caption=None, examples=[])
    assert "Context" not in bare.user
    full, _ = render_parts(
        "describe_v1", report="Invasive carcinoma.", caption="Old caption.", examples=["Ex one."]
    )
    for piece in ("Invasive carcinoma.", "Old caption.", "- Ex one.", "Never mention the context"):
        assert piece in full.user
    assert "pathologist" in full.system
