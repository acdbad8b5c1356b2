"""SIGINT/SIGTERM → a stop event: stop claiming, finish or release in-flight items, exit."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (it schedules an LLM call with about a
    quarter less CPU than asyncio's), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``main(stop)`` in a fresh event loop (:func:`new_event_loop`); the first
    SIGINT/SIGTERM sets ``stop``, a second one exits at once (leases then expire and other
    workers take over)."""

    async def runner() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        hits = 0

        def on_signal(signum: int) -> None:
            nonlocal hits
            hits += 1
            if hits == 1:
                print(
                    f"\n{signal.Signals(signum).name}: finishing in-flight work, then exiting "
                    "(press again to exit now)",
                    file=sys.stderr,
                )
                stop.set()
            else:
                print("exiting now", file=sys.stderr)
                raise SystemExit(130)

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            except (RuntimeError, ValueError):  # not the main thread (embedded use)
                break
        try:
            return await main(stop)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=new_event_loop) as loop_runner:
        return loop_runner.run(runner())
