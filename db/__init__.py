"""Alembic migrations (data for Alembic): installed as ``pathgen.assets.db``."""
