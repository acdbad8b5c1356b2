"""Worker entry points (composition roots): signal handling around the pipeline's event loop.

Installed as ``pathgen.workers`` (the wheel has no top-level ``workers`` module);
``pathgen run`` and ``pathgen worker`` call these. From a script or a cluster job, use
the CLI: ``pathgen -c pathgen.toml worker --stages describe,revise`` (or
``python -m pathgen -c pathgen.toml worker ...``).
"""
