"""Worker entry points (composition roots): signal handling around the pipeline's event loop.

``pathgen run`` and ``pathgen worker`` call these; they are also runnable directly:
``python -m workers.worker --config pathgen.toml --stages describe,revise``.
"""
