"""The files pathgen ships besides code, found with :mod:`importlib.resources`.

In the repository they live in top-level folders; the wheel (and an editable install)
maps them into this package (``[tool.setuptools] package-dir`` in ``pyproject.toml``):

* ``prompts/`` → ``pathgen.assets.prompts``: Jinja2 prompt templates, ``retrieval/*.yaml``
  (the organ prompt library) and ``vocabulary/*.yaml``;
* ``db/`` → ``pathgen.assets.db``: the Alembic environment and ``versions/``;
* ``alembic.ini`` → ``pathgen/assets/alembic.ini``: beside ``db/`` in both layouts.

Example::

    template = prompts_dir() / "describe_v1.jinja2"
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def _folder(package: str) -> Path:
    return Path(os.fspath(resources.files(package)))


def prompts_dir() -> Path:
    """The shipped ``prompts/`` folder: templates, ``retrieval/`` and ``vocabulary/``."""
    return _folder("pathgen.assets.prompts")


def migrations_dir() -> Path:
    """The shipped Alembic script directory (``env.py`` and ``versions/``)."""
    return _folder("pathgen.assets.db")


def alembic_ini() -> Path:
    """The Alembic configuration file: the folder above the migrations holds it, in the
    repository (``alembic.ini`` beside ``db/``) as in the wheel (package data of
    ``pathgen.assets.db``, declared as ``../alembic.ini``)."""
    return migrations_dir().parent / "alembic.ini"
