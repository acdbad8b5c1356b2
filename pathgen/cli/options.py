"""Option helpers shared by the commands that start work (``run``, ``tile``, ``check``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathgen.runs.manifest import SlideEntry
    from pathgen.settings import Settings

LOG_FORMATS = ("rich", "json")


def check_log_format(value: str) -> str:
    from pathgen.errors import ConfigError

    if value not in LOG_FORMATS:
        raise ConfigError(f"--log-format must be one of {LOG_FORMATS}", key="--log-format")
    return value


def slide_entries(
    settings: Settings, manifest: Path | None, slides: list[str] | None = None
) -> list[SlideEntry]:
    """The slides of ``--manifest`` plus the files/folders given; ``run.manifest`` when
    neither is given (slides named on the command line are the ones meant)."""
    from pathgen.runs.manifest import discover, read_manifest

    entries: list[SlideEntry] = []
    source = manifest
    if source is None and not slides and settings.run.manifest:
        source = Path(settings.run.manifest)
    if source is not None:
        entries += read_manifest(source)
    entries += discover(slides or [])
    return entries
