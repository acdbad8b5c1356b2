"""Relative paths in a config file are relative to the file's folder, not to where
pathgen runs; API keys come from the variable a stage names, "" meaning no key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathgen.errors import ConfigError
from pathgen.llm.credentials import PLACEHOLDER_KEY, api_key, key_env
from pathgen.settings import load_settings

CONFIG = """
[database]
url = "sqlite+aiosqlite:///state/pathgen.db"
[run]
manifest = "slides.csv"
data_dir = "data"
[tiling]
preview_dir = "~/previews"
[model]
pretrained = "model/clip.pt"
config_json = "model/clip.json"
[captioning]
few_shot_references = "refs/examples.csv"
[captioning.describe]
template = "my-prompts/describe_v2.jinja2"
[captioning.revise]
template = "revise_v1"
[[captioning.describers]]
template = "alt/describe.jinja2"
"""


def test_relative_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pathgen.toml").write_text(CONFIG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings(folder / "pathgen.toml")
    assert s.database.url == f"sqlite+aiosqlite:///{folder}/state/pathgen.db"
    assert s.run.manifest == str(folder / "slides.csv")
    assert s.run.data_dir == str(folder / "data")
    assert s.tiling.preview_dir == str(Path("~/previews").expanduser())
    assert s.model.pretrained == str(folder / "model/clip.pt")
    assert s.model.config_json == str(folder / "model/clip.json")
    assert s.captioning.few_shot_references == str(folder / "refs/examples.csv")
    assert s.captioning.describe.template == str(folder / "my-prompts/describe_v2.jinja2")
    assert s.captioning.describers[0].template == str(folder / "alt/describe.jinja2")
    assert s.captioning.revise.template == "revise_v1"  # a shipped template's name


@pytest.mark.parametrize("tag", ["laion2b_s34b_b88k", "hf-hub:org/model", "/abs/clip.pt"])
def test_names_and_absolute_paths_are_kept(tmp_path: Path, tag: str) -> None:
    (tmp_path / "c.toml").write_text(f'[model]\npretrained = "{tag}"\n')
    assert load_settings(tmp_path / "c.toml").model.pretrained == tag


def test_environment_overrides_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.toml").write_text('[run]\nmanifest = "in-file.csv"\n')
    monkeypatch.setenv("PATHGEN_MANIFEST", "from-env.csv")
    assert load_settings(tmp_path / "c.toml").run.manifest == "from-env.csv"


def test_a_template_given_as_a_path_is_loaded_from_it(tmp_path: Path) -> None:
    from pathgen.prompts import render_parts

    own = tmp_path / "describe_v2.jinja2"
    own.write_text("{% block user %}Describe. {{ report or '' }}{% endblock %}")
    parts, template = render_parts(str(own), report="r")
    assert parts.user == "Describe. r" and template.name == "describe_v2"
    with pytest.raises(ConfigError, match="not found at"):
        render_parts(str(tmp_path / "nope.jinja2"))


def test_keys_come_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHGEN_TEST_KEY", "sk-1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert api_key(key_env("PATHGEN_TEST_KEY", "openai"), provider="openai") == "sk-1"
    assert key_env(None, "openai") == "OPENAI_API_KEY"
    assert key_env(None, "mistral") == "MISTRAL_API_KEY"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set") as info:
        api_key(key_env(None, "openai"), provider="openai")  # even with a local base_url
    assert 'api_key_env = ""' in str(info.value)
    monkeypatch.setenv("PATHGEN_TEST_KEY", "   ")
    with pytest.raises(ConfigError, match="PATHGEN_TEST_KEY"):
        api_key("PATHGEN_TEST_KEY", provider="openai")
    assert api_key(key_env("", "openai"), provider="openai") == PLACEHOLDER_KEY  # keyless
