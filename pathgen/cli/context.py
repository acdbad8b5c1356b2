"""What every command needs: the settings, an engine, and one way to run async code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import typer

from pathgen.settings import Settings, load_settings

T = TypeVar("T")


@dataclass
class CliState:
    config_path: Path | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine for a command (the only ``asyncio.run`` in the CLI)."""
    return asyncio.run(fn())  # type: ignore[arg-type]
