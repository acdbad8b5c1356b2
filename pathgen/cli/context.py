"""What every command needs: the settings, one way to run async code, and consoles.

Nothing heavy is imported here (no pydantic settings, no database): ``pathgen --help``
imports every command module, so they import what they need inside their functions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from pathgen.settings import Settings

T = TypeVar("T")


@dataclass
class CliState:
    config_path: Path | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from pathgen.settings import load_settings

            self._settings = load_settings(self.config_path)
        return self._settings


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine for a command (the only ``asyncio.run`` in the CLI)."""
    import asyncio

    return asyncio.run(fn())  # type: ignore[arg-type]


def console(*, stderr: bool = False) -> Console:
    """A rich console (imported on use: ``pathgen --help`` needs none)."""
    from rich.console import Console

    return Console(stderr=stderr)


def print_wide(out: Console, renderable: Any) -> None:
    """Print a table whole: at the terminal's width, or at its natural width when the
    output is not a terminal (rich would otherwise crop cells to ``descri…`` at 80)."""
    if out.is_terminal:
        out.print(renderable)
        return
    from rich.measure import Measurement

    needed = Measurement.get(out, out.options.update_width(10_000), renderable).maximum
    saved = out.width
    out.width = max(needed, saved)
    try:
        out.print(renderable)
    finally:
        out.width = saved
