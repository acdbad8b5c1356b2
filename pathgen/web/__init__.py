"""Curation web UI: runs dashboard, tile grid, tile history, review and search.

Example::

    from pathgen.web import create_app

    app = create_app(settings, reviewer="ana")
"""

from pathgen.web.app import create_app

__all__ = ["create_app"]
