"""``pathgen synth-slide``: write a synthetic pyramidal TIFF slide."""

from __future__ import annotations

import re
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WIDTHxHEIGHT`` (e.g. ``40000x30000``); raise ValueError with a hint."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 40000x30000")
    return int(match.group(1)), int(match.group(2))


def synth_slide(
    out: Path = typer.Argument(..., help="Output .tiff path."),
    size: str = typer.Option("40000x30000", help="WIDTHxHEIGHT in level-0 pixels."),
    mpp: float = typer.Option(0.25, help="µm per pixel recorded in the TIFF."),
    no_mpp: bool = typer.Option(False, "--no-mpp", help="Record no resolution."),
    seed: int = typer.Option(0, help="Seed of the tissue layout."),
    tile: int = typer.Option(512, help="TIFF tile size (multiple of 16)."),
    quality: int = typer.Option(90, min=1, max=100, help="JPEG quality."),
) -> None:
    """Write a synthetic H&E-like slide that OpenSlide reads (generic TIFF, all levels)."""
    from pathgen.slides.synth import write_synthetic_slide

    try:
        width, height = parse_size(size)
        if not no_mpp and mpp <= 0:
            raise ValueError(f"--mpp must be > 0, got {mpp}")
        if not out.parent.exists():
            raise ValueError(f"{out}: folder {out.parent} does not exist")
        start = time.perf_counter()
        path = write_synthetic_slide(
            out, width, height, mpp=None if no_mpp else mpp, seed=seed, tile=tile, quality=quality
        )
    except (ValueError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    res = "no µm/px" if no_mpp else f"{mpp} µm/px"
    console.print(
        f"wrote {path} ({width}x{height}, {res}, seed {seed}) in {time.perf_counter() - start:.1f}s"
    )


def register(app: typer.Typer) -> None:
    """Add the ``synth-slide`` command to ``app``."""
    app.command("synth-slide")(synth_slide)
