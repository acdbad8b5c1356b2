"""A corrupt or odd slide gives pathgen's one error naming the slide and the readers
tried; what tifffile, PIL and pydicom warn or log while trying it stays off stderr."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathgen.errors import SlideError
from pathgen.slides import open_slide
from pathgen.slides.quiet import library_noise

#: What the libraries print on these files when nothing keeps it off the terminal.
NOISE = ("contains no pages", "Corrupt EXIF", "End of file reached", "UserWarning", "Warning:")


def _bad_exif_jpeg(path: Path, side: int) -> Path:
    pixels = np.random.default_rng(0).integers(0, 255, (side, side, 3), np.uint8)
    exif = b"Exif\0\0MM\0*\0\0\0\x08\0\x05\xff\xff"  # says 5 entries, holds none
    Image.fromarray(pixels).save(path, "JPEG", exif=exif)
    return path


def _odd_slides(folder: Path) -> list[Path]:
    folder.mkdir()
    no_pages = folder / "no-pages.tif"
    no_pages.write_bytes(b"II*\0\0\0\0\0")  # a TIFF header whose first page offset is 0
    dicom = folder / "cut.dcm"
    dicom.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\0\0\0UL\x04\0" + b"\xff" * 300)
    png = io.BytesIO()
    Image.fromarray(np.zeros((600, 600, 3), np.uint8)).save(png, "PNG")
    cut_png = folder / "cut.png"
    cut_png.write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    return [no_pages, dicom, cut_png, _bad_exif_jpeg(folder / "bad-exif.jpg", 300)]


def test_tile_prints_our_error_per_slide_and_no_library_noise(tmp_path: Path) -> None:
    slides = _odd_slides(tmp_path / "slides")
    env = {
        **os.environ,
        "PATHGEN_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        "PATHGEN_DATA_DIR": str(tmp_path / "data"),
    }
    res = subprocess.run(
        [sys.executable, "-m", "pathgen", "tile", str(tmp_path / "slides"), "--assume-mpp", "0.5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 3, res.stdout + res.stderr
    assert "slides tiled: 0, failed: 4" in res.stdout
    for slide in slides:
        assert f"slide failed: {slide}: " in res.stderr, res.stderr
    for name in ("no-pages.tif", "cut.dcm"):
        line = next(
            ln
            for ln in res.stderr.splitlines()
            if ln.startswith(f"slide failed: {tmp_path / 'slides' / name}")
        )
        assert "no reader can open this file; tried openslide: " in line and "pil: " in line
    for noise in NOISE:
        assert noise not in res.stderr, res.stderr


def test_warnings_outside_an_open_still_show(tmp_path: Path) -> None:
    """Only what the thread opening a slide hears is kept: another thread's warning, and
    one after the open, are shown as always; our errors pass through."""
    inside, done = threading.Event(), threading.Event()

    def open_quietly() -> None:
        with library_noise() as heard:
            inside.set()
            done.wait(10)
        assert heard == []

    opener = threading.Thread(target=open_quietly)
    opener.start()
    inside.wait(10)
    with pytest.warns(UserWarning, match="from another thread"):
        warnings.warn("from another thread", UserWarning, stacklevel=1)
    done.set()
    opener.join()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        reader = open_slide(_bad_exif_jpeg(tmp_path / "bad-exif.jpg", 64))
        reader.close()
        with pytest.raises(SlideError, match="no-pages.tif: no reader can open"):
            open_slide(_odd_slides(tmp_path / "slides")[0])
        warnings.warn("after the open", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["after the open"]
