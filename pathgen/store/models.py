"""Table definitions. The Alembic migrations in ``db/versions`` must match these exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="created")
    pathgen_version: Mapped[str] = mapped_column(String(32))
    #: ``host:pid:token`` of the ``pathgen run`` process driving the run (None when none).
    owner: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RunEstimate(Base):
    """The last ``pathgen estimate`` of a run (made before the run exists, so no foreign key)."""

    __tablename__ = "run_estimates"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    estimate: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkerBeat(Base):
    """What one worker process is doing for a run's stage, rewritten about every second:
    its provider calls in flight (``pathgen status`` adds up the fresh rows)."""

    __tablename__ = "worker_beats"

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    calls_in_flight: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LLMBatch(Base):
    """One provider batch of a caption stage, recorded before anything is submitted.

    ``state``: ``prepared`` (items reserved under ``lease``) → ``uploaded`` (input file
    id known) → ``submitted`` (provider batch id known) → ``done`` (results imported;
    ``provider_status`` says completed, expired, cancelled or failed).
    """

    __tablename__ = "llm_batches"
    __table_args__ = (Index(None, "run_id", "stage", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    stage: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    #: The lease token the batch's items are held under.
    lease: Mapped[str] = mapped_column(String(128))
    #: Work item ids in the batch (each line's custom_id is ``<item id>|<lease>``).
    items: Mapped[list[Any]] = mapped_column(JSON)
    input_file_id: Mapped[str | None] = mapped_column(String(128))
    provider_batch_id: Mapped[str | None] = mapped_column(String(128))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Slide(Base):
    __tablename__ = "slides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: The reader that opened the file: openslide, wsidicom, pydicom, tifffile or pil.
    reader: Mapped[str | None] = mapped_column(String(32))
    vendor: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    mpp: Mapped[float | None] = mapped_column(Float)
    mpp_source: Mapped[str | None] = mapped_column(String(32))
    level_count: Mapped[int | None] = mapped_column(Integer)
    params_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error_reason: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    tile_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RunSlide(Base):
    """A slide's membership in a run, with the manifest row that brought it."""

    __tablename__ = "run_slides"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    slide_id: Mapped[int] = mapped_column(ForeignKey("slides.id"), primary_key=True)
    manifest_mpp: Mapped[float | None] = mapped_column(Float)
    report_path: Mapped[str | None] = mapped_column(Text)
    report_text: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(255))
    organ: Mapped[str | None] = mapped_column(String(64))


class Tile(Base):
    __tablename__ = "tiles"
    __table_args__ = (UniqueConstraint("slide_id", "x", "y", "size"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slide_id: Mapped[int] = mapped_column(ForeignKey("slides.id"), index=True)
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    read_level: Mapped[int] = mapped_column(Integer)
    mpp: Mapped[float] = mapped_column(Float)
    tile_px: Mapped[int] = mapped_column(Integer)
    tissue_fraction: Mapped[float] = mapped_column(Float)


class Embedding(Base):
    """A per-slide embedding file computed with one model."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("slide_id", "model_fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slide_id: Mapped[int] = mapped_column(ForeignKey("slides.id"), index=True)
    model_fingerprint: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RetrievalPrompt(Base):
    __tablename__ = "retrieval_prompts"
    __table_args__ = (UniqueConstraint("run_id", "slide_id", "prompt_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    slide_id: Mapped[int | None] = mapped_column(ForeignKey("slides.id"))
    prompt_key: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    organ: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)


class SelectionRound(Base):
    """One selection of a run's tiles: round 0 is the first; ``run --redo select`` adds one.

    ``settings`` holds the ``model`` and ``selection`` sections the round was made with.
    """

    __tablename__ = "selection_rounds"
    __table_args__ = (UniqueConstraint("run_id", "round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    round: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Selection(Base):
    """A selection decision on a tile in one round; a slide's newest round is its current one."""

    __tablename__ = "selections"
    __table_args__ = (
        UniqueConstraint("run_id", "round", "tile_id"),
        Index(None, "tile_id", "run_id", "round"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    model_fingerprint: Mapped[str | None] = mapped_column(String(128))
    tile_id: Mapped[int] = mapped_column(ForeignKey("tiles.id"))
    kept: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    prompt_key: Mapped[str | None] = mapped_column(String(255))
    score: Mapped[float | None] = mapped_column(Float)
    report_score: Mapped[float | None] = mapped_column(Float)
    cluster_id: Mapped[int | None] = mapped_column(Integer)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("tiles.id"))


class CaptionRevision(Base):
    """Append-only: the text of a stored revision is never updated or deleted."""

    __tablename__ = "caption_revisions"
    __table_args__ = (Index(None, "run_id", "stage", "tile_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tile_id: Mapped[int] = mapped_column(ForeignKey("tiles.id"), index=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    stage: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("caption_revisions.id"), index=True)
    parent_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    branch: Mapped[str] = mapped_column(String(32), default="caption")
    text: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(255))
    template_name: Mapped[str | None] = mapped_column(String(128))
    template_hash: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    #: Of ``input_tokens``, those the provider served from its prompt cache.
    cached_input_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    error: Mapped[str | None] = mapped_column(Text)
    edits: Mapped[list[Any] | None] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Review(Base):
    """A curator's accept / reject / edit decision on a tile's caption."""

    __tablename__ = "reviews"
    __table_args__ = (Index(None, "run_id", "tile_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    tile_id: Mapped[int] = mapped_column(ForeignKey("tiles.id"))
    revision_id: Mapped[int | None] = mapped_column(ForeignKey("caption_revisions.id"))
    decision: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkItem(Base):
    """The queue: one row per (run, stage, key); workers claim rows with leases."""

    __tablename__ = "work_items"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "key"),
        Index(None, "run_id", "stage", "status", "available_at"),
        Index(None, "status", "lease_expires_at"),
        Index(
            "ix_work_items_open",
            "run_id",
            "stage",
            "status",
            sqlite_where=text("status <> 'done'"),
            postgresql_where=text("status <> 'done'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    stage: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    available_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InstructItem(Base):
    """Append-only: one instruction-tuning / VQA item made from a caption revision.

    ``turns`` is a list of ``{"question", "answer", "kind", ...}`` (one for every type
    but ``conversation``); ``verify_status`` (``passed``/``failed``) and
    ``verify_reason`` record the check of every answer against the source description;
    a curator's edit is a new item (provider ``human``) whose parent is the edited one.
    """

    __tablename__ = "instruct_items"
    __table_args__ = (Index(None, "run_id", "tile_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    tile_id: Mapped[int] = mapped_column(ForeignKey("tiles.id"))
    revision_id: Mapped[int] = mapped_column(ForeignKey("caption_revisions.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("instruct_items.id"))
    kind: Mapped[str] = mapped_column(String(16))
    turns: Mapped[list[Any]] = mapped_column(JSON)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(255))
    template_name: Mapped[str | None] = mapped_column(String(128))
    template_hash: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    verify_status: Mapped[str] = mapped_column(String(16))
    verify_reason: Mapped[str | None] = mapped_column(Text)
    verifier: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InstructReview(Base):
    """A curator's accept / reject / edit decision on an instruct item."""

    __tablename__ = "instruct_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("instruct_items.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Account(Base):
    """A person who may use the curation UI; ``role`` is viewer, curator, reviewer or admin.

    ``password_hash`` is an argon2id hash (never the password itself).
    """

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebSession(Base):
    """A logged-in browser: the SHA-256 of its cookie token, its account and its expiry."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class CurationTile(Base):
    """One captioned tile of a run as the curation grid sees it, kept by database triggers.

    A row appears with the tile's first caption revision in the run; ``final_revision_id``
    follows its newest ``summarize``/``human`` caption, ``review``/``reviewer`` its newest
    review. The grid filters and sorts on these indexed columns, so a page costs the same
    at any run size (see ``db/versions/0008_curation_accounts.py``).
    """

    __tablename__ = "curation_tiles"
    __table_args__ = (
        Index(None, "run_id", "review", "tile_id"),
        Index(None, "run_id", "slide_id", "tile_id"),
        Index(None, "run_id", "organ", "tile_id"),
        Index(None, "run_id", "label", "tile_id"),
        Index(None, "run_id", "final_stage", "tile_id"),
        Index(None, "run_id", "reviewer", "tile_id"),
        Index(None, "run_id", "score", "tile_id"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    tile_id: Mapped[int] = mapped_column(ForeignKey("tiles.id"), primary_key=True)
    slide_id: Mapped[int] = mapped_column(Integer)
    organ: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(255))
    score: Mapped[float | None] = mapped_column(Float)
    final_revision_id: Mapped[int | None] = mapped_column(Integer)
    final_stage: Mapped[str | None] = mapped_column(String(32))
    review: Mapped[str] = mapped_column(String(16), default="unreviewed")
    reviewer: Mapped[str | None] = mapped_column(String(128))
    #: Bumped by every accept/reject/edit: the compare-and-set that refuses stale forms.
    version: Mapped[int] = mapped_column(Integer, default=0)


class RunTally(Base):
    """Counts kept per run as rows change (by triggers), so the dashboard reads, not counts.

    ``kind`` is ``revisions`` (``key`` = ``stage:status``, with token and cost sums),
    ``review`` (``key`` = a review state; the states sum to the run's captioned tiles),
    ``work_done`` (``key`` = stage: finished work items), ``kept`` (``key`` =
    ``slide_id:round``: tiles that selection round kept) or ``review_block`` (``key`` =
    ``review:block``: captioned tiles in that state with ``tile_id // 1024 == block``,
    the grid's position index for "go to tile #N").
    """

    __tablename__ = "run_tallies"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)


class ReviewHold(Base):
    """A tile handed to one curator by "Review next", theirs until ``expires_at``."""

    __tablename__ = "review_holds"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    tile_id: Mapped[int] = mapped_column(ForeignKey("tiles.id"), primary_key=True)
    account: Mapped[str] = mapped_column(String(128), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReviewSample(Base):
    """A tile an admin asked to be reviewed by two curators (the double-review sample)."""

    __tablename__ = "review_samples"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    tile_id: Mapped[int] = mapped_column(ForeignKey("tiles.id"), primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
