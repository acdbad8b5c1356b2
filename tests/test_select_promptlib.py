"""The retrieval prompt library loader: validation, organ lookup, the shipped library."""

from __future__ import annotations

import logging
import textwrap

import pytest

from pathgen.errors import ConfigError
from pathgen.promptlib import load_library, prompts_for

GOOD = {
    "generic.yaml": """
        organ: generic
        prompts:
          - id: generic.necrosis
            feature: Necrosis
            definition: eosinophilic debris with karyorrhexis and loss of nuclear detail
          - id: generic.fat
            feature: Adipose tissue
            definition: large empty vacuoles of mature adipocytes with thin septa
    """,
    "breast.yaml": """
        organ: breast
        aliases: [Breast cancer, mammary gland]
        prompts:
          - id: breast.idc_nests
            feature: Invasive ductal carcinoma nests
            definition: irregular nests and cords of atypical ductal cells in desmoplastic stroma
    """,
}


def _write(directory, files):
    for name, body in files.items():
        (directory / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return directory


def test_load_and_lookup(tmp_path, caplog):
    lib = load_library(_write(tmp_path, GOOD))
    assert set(lib) == {"generic", "breast"}
    breast = prompts_for("Mammary Gland", lib)
    assert [p.id for p in breast] == ["breast.idc_nests", "generic.necrosis", "generic.fat"]
    assert breast[0].text == (
        "Invasive ductal carcinoma nests – irregular nests and cords of atypical ductal cells "
        "in desmoplastic stroma"
    )
    assert breast[0].source == "library" and breast[0].organ == "breast"
    assert [p.id for p in prompts_for("BREAST", lib)] == [p.id for p in breast]
    with caplog.at_level(logging.WARNING):
        assert [p.id for p in prompts_for("kidney", lib)] == ["generic.necrosis", "generic.fat"]
    assert "kidney" in caplog.text
    assert [p.id for p in prompts_for(None, lib)] == ["generic.necrosis", "generic.fat"]


BAD = {
    "no organ": ("x.yaml", "prompts: [{id: a, feature: F, definition: some words here}]", "organ"),
    "stem mismatch": ("x.yaml", "organ: y\nprompts: [{id: a, feature: F, definition: d}]", "stem"),
    "no prompts": ("x.yaml", "organ: x\nprompts: []", "prompts"),
    "dup id": (
        "x.yaml",
        "organ: x\nprompts:\n - {id: a, feature: F, definition: d}\n"
        " - {id: a, feature: G, definition: e}",
        "prompts[1] (id a): duplicate id",
    ),
    "empty feature": (
        "x.yaml",
        "organ: x\nprompts:\n - {id: a, feature: F, definition: d}\n"
        " - {id: b, feature: '', definition: e}",
        "prompts[1] (id b): 'feature'",
    ),
    "missing definition": ("x.yaml", "organ: x\nprompts:\n - {id: a, feature: F}", "'definition'"),
    "not yaml": ("x.yaml", "organ: x\nprompts: [unclosed", "not valid YAML"),
    "aliases not a list": ("x.yaml", "organ: x\naliases: 3\nprompts: [{id: a}]", "aliases"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_names_file_and_entry(tmp_path, case):
    name, body, expected = BAD[case]
    _write(tmp_path, {name: body})
    with pytest.raises(ConfigError) as err:
        load_library(tmp_path)
    assert str(tmp_path / name) in str(err.value)
    assert expected in str(err.value)


def test_ids_unique_across_files(tmp_path):
    files = dict(GOOD)
    files["lung.yaml"] = "organ: lung\nprompts: [{id: generic.fat, feature: F, definition: d}]"
    with pytest.raises(ConfigError, match="generic.fat"):
        load_library(_write(tmp_path, files))


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_library(tmp_path / "nope")


def test_shipped_library_covers_15_organs_with_15_prompts():
    lib = load_library()
    organs = [k for k in lib if k != "generic"]
    assert "generic" in lib and len(lib["generic"]) >= 5
    assert len(organs) >= 15, sorted(organs)
    thin = {k: len(v) for k, v in lib.items() if k != "generic" and len(v) < 15}
    assert not thin
    for organ in organs:
        prompts = prompts_for(organ, lib)
        assert prompts[0].organ == organ and prompts[-1].organ == "generic"
