"""Manifests a person wrote by hand: every mistake is a ConfigError naming the file, the
line and what to do, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathgen.errors import ConfigError
from pathgen.runs.manifest import read_manifest


def _manifest(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "slides.csv"
    path.write_bytes(body)
    return path


def test_a_row_with_more_values_than_columns(tmp_path: Path) -> None:
    path = _manifest(tmp_path, b"path,mpp\na.svs,0.5\nb, c.svs,0.5\n")
    with pytest.raises(ConfigError, match=r"slides.csv: line 3: 3 values for 2 columns") as err:
        read_manifest(path)
    assert "quote" in str(err.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = _manifest(tmp_path, b"path,label\na.svs,tum\xe9\n")
    with pytest.raises(ConfigError, match=r"slides.csv: not UTF-8 text \(line 2\)"):
        read_manifest(path)


def test_semicolons_are_named(tmp_path: Path) -> None:
    path = _manifest(tmp_path, b"path;mpp\na.svs;0.5\n")
    with pytest.raises(ConfigError, match=r"columns found: \['path;mpp'\].*comma"):
        read_manifest(path)


def test_a_good_manifest_still_reads(tmp_path: Path) -> None:
    path = _manifest(tmp_path, b'\xef\xbb\xbfpath,mpp,label\n"a, b.svs",0.5,tumour\n')
    (entry,) = read_manifest(path)
    assert entry.path == str(tmp_path / "a, b.svs") and entry.mpp == 0.5
    assert entry.label == "tumour"


async def test_check_notes_unknown_organs_and_repeated_slides(tmp_path: Path) -> None:
    from pathgen.runs.preflight import preflight
    from pathgen.settings import Settings

    slide = tmp_path / "a.svs"
    slide.write_bytes(b"x")
    path = _manifest(
        tmp_path, b"path,organ\na.svs,martian\na.svs,Breast\nb.svs,\n"
    )  # b.svs: run.organ
    settings = Settings.model_validate({"run": {"organ": "lunar"}})
    checked = await preflight(settings, ["tile"], read_manifest(path))
    notes = "\n".join(checked.notes)
    assert "1 slide(s) listed more than once (first: " + str(slide) + ")" in notes
    assert (
        "organ(s) not in the prompt library: 'lunar' (1 slide(s)), 'martian' (1 slide(s))" in notes
    )
    assert "generic prompts" in notes and "breast" in notes
