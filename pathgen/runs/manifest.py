"""Slide manifests (CSV) and slide discovery in folders.

A manifest is CSV with a ``path`` column and optional ``mpp``, ``report`` (path to
the slide's pathology report text), ``label`` and ``organ`` columns. Relative
paths are taken relative to the manifest's folder.

Example::

    entries = read_manifest("slides.csv")
    entries = discover(["slides/", "one.svs"])
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from pathgen.errors import ConfigError

#: File endings of slides found in folders: what OpenSlide reads, plus flat images (a
#: DICOM series is a folder of .dcm files: one slide). Any file can be named directly.
SLIDE_SUFFIXES = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".dcm",
    ".png",
    ".jpg",
    ".jpeg",
)
KNOWN_COLUMNS = {"path", "mpp", "report", "label", "organ"}


@dataclass(frozen=True)
class SlideEntry:
    path: str
    mpp: float | None = None
    report_path: str | None = None
    label: str | None = None
    organ: str | None = None

    def report_text(self) -> str | None:
        """The report's text, or None when there is no report (a missing file is an error)."""
        if not self.report_path:
            return None
        path = Path(self.report_path)
        if not path.is_file():
            raise ConfigError(
                f"report file not found for slide {self.path}: {path}", key="manifest.report"
            )
        return path.read_text(encoding="utf-8", errors="replace")


def read_manifest(path: str | Path) -> list[SlideEntry]:
    """Parse a manifest; errors name the file, the line and the column."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("manifest not found", path=str(file))
    base = file.parent
    entries: list[SlideEntry] = []
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text (line {line}): save the manifest as UTF-8 CSV", path=str(file)
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    found = [c.strip().lower() for c in reader.fieldnames or []]
    columns = set(found)
    if "path" not in columns:
        raise ConfigError(
            f"manifest needs a 'path' column (columns found: {found}; the manifest is "
            "comma-separated CSV with a header line)",
            path=str(file),
        )
    unknown = columns - KNOWN_COLUMNS
    if unknown:
        raise ConfigError(
            f"unknown column(s) {sorted(unknown)}; known: {sorted(KNOWN_COLUMNS)}",
            path=str(file),
        )
    for lineno, raw in enumerate(reader, start=2):
        if None in raw:  # csv.DictReader keeps values past the header under None
            given = len(found) + len(raw[None])
            raise ConfigError(
                f"line {lineno}: {given} values for {len(found)} columns (quote a value "
                'that contains a comma: "a, b.svs")',
                path=str(file),
            )
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        if not row.get("path"):
            raise ConfigError(f"line {lineno}: empty path", path=str(file), key="path")
        mpp: float | None = None
        if row.get("mpp"):
            try:
                mpp = float(row["mpp"])
            except ValueError:
                raise ConfigError(
                    f"line {lineno}: mpp {row['mpp']!r} is not a number",
                    path=str(file),
                    key="mpp",
                ) from None
            if mpp <= 0:
                raise ConfigError(f"line {lineno}: mpp must be > 0", path=str(file), key="mpp")
        report = row.get("report") or None
        entries.append(
            SlideEntry(
                path=str(_resolve(base, row["path"])),
                mpp=mpp,
                report_path=str(_resolve(base, report)) if report else None,
                label=row.get("label") or None,
                organ=row.get("organ") or None,
            )
        )
    return entries


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def discover(targets: list[str]) -> list[SlideEntry]:
    """Slides from files and folders (recursively); one entry per DICOM folder."""
    found: list[SlideEntry] = []
    for target in targets:
        path = Path(target).expanduser().resolve()
        if path.is_dir():
            dicom_dirs: set[Path] = set()
            for child in sorted(path.rglob("*")):
                if not child.is_file() or child.suffix.lower() not in SLIDE_SUFFIXES:
                    continue
                if child.suffix.lower() == ".dcm":
                    if child.parent not in dicom_dirs:
                        dicom_dirs.add(child.parent)
                        found.append(SlideEntry(path=str(child)))
                    continue
                found.append(SlideEntry(path=str(child)))
        else:
            # A missing file is kept: the tiler records it as a failed slide with a reason.
            found.append(SlideEntry(path=str(path)))
    return found
