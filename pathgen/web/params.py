"""Path parameters the routes share: a row id is a positive INTEGER the database can hold.

An id outside that range (``/tiles/99999999999999999999999/image.jpg``) names nothing:
the app answers 404, as for any id that does not exist (see ``create_app``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

#: Largest id a row can have (a Postgres INTEGER column).
MAX_ROW_ID = 2**31 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
