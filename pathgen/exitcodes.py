"""The exit codes of ``pathgen run`` and ``pathgen worker`` (documented in README.md).

A cluster script tells success from failure by these, so each means one thing:

======  ==================================================================================
code    meaning
======  ==================================================================================
0       every item of the stages this command ran is done
1       an unexpected error (a bug, or a database that cannot be reached)
2       cannot start: bad config, missing API key variable, model that does not load,
        template that does not render, provider that refused the probe, config drift;
        nothing was claimed and no paid call was made
3       finished, but some items are parked as failed (``pathgen retry RUN`` requeues them)
4       stopped with unfinished work that no worker can take now (e.g. a stage paused
        after a permanent provider error): its items are still queued
5       a budget was reached (``run.max_cost_usd`` or a stage's ``max_cost_usd``): the
        items it stopped are still queued; raise the limit and run again to resume
130     interrupted (Ctrl-C, SIGTERM): run the same command to resume
======  ==================================================================================

Codes 3 and 4 come from the queue in the database, not from one process's counters, so
they are true whoever processed the items.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; see the module docstring."""

    OK = 0
    ERROR = 1
    CANNOT_START = 2
    PARKED = 3
    STALLED = 4
    BUDGET = 5
    INTERRUPTED = 130
