"""The `[model]` lines `pathgen train-clip` prints work when pasted into the config, whose
relative paths are taken from the config's own folder, not the folder the command ran in."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pathgen.export.open_clip_model import model_snippet
from pathgen.settings import load_settings


def test_snippet_paths_hold_from_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    weights = Path("demo-run/trained/model/open_clip_model.safetensors")
    snippet = model_snippet("tiny_clip", 'models/my "clip".json', weights)
    config = tmp_path / "demo-run" / "pathgen.toml"
    config.parent.mkdir()
    config.write_text(snippet + "\n")
    model = load_settings(config).model
    assert model.pretrained == str(tmp_path / weights)
    assert model.config_json == str(tmp_path / 'models/my "clip".json')
    assert tomllib.loads(snippet)["model"]["name"] == "tiny_clip"
