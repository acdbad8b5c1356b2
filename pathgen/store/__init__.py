"""Persistence: SQLAlchemy 2.0 async models, engine factory and repositories.

Schemas are created only by the Alembic migrations in ``db/`` (``pathgen db upgrade``).
"""
