"""One typed settings object, loaded from ``pathgen.toml`` plus environment overrides.

Secrets (API keys) are never read from the file: a stage names the environment
variable that holds its key (``api_key_env``), and the key is read at call time.

Example::

    settings = load_settings("pathgen.toml")
    settings.database.url
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pathgen.errors import ConfigError

DEFAULT_CONFIG = "pathgen.toml"
DEFAULT_DB_URL = "sqlite+aiosqlite:///pathgen.db"

#: Environment variables that override single settings: name -> dotted key.
ENV_OVERRIDES: dict[str, str] = {
    "PATHGEN_DB_URL": "database.url",
    "PATHGEN_DATA_DIR": "run.data_dir",
    "PATHGEN_MANIFEST": "run.manifest",
}

_SUPPORTED_DB_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatabaseSettings(_Section):
    url: str = DEFAULT_DB_URL
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _SUPPORTED_DB_SCHEMES:
            raise ValueError(
                f"unsupported database URL {value!r}: use sqlite+aiosqlite:///path.db "
                "or postgresql+asyncpg://user@host/dbname"
            )
        return value


class RunSettings(_Section):
    name: str | None = None
    manifest: str | None = None
    data_dir: str = "pathgen-data"
    organ: str | None = None
    #: Spending limit of the run's LLM calls (see pathgen.runs.budget).
    max_cost_usd: float | None = Field(None, gt=0)


class TissueSettings(_Section):
    detection_mpp: float = Field(8.0, gt=0)
    median_blur: int = Field(7, ge=1)
    saturation_floor: int = Field(20, ge=0, le=255)
    close_um: float = Field(64.0, ge=0)
    min_object_um2: float = Field(40_000.0, ge=0)
    min_hole_um2: float = Field(20_000.0, ge=0)


class TilingSettings(_Section):
    mpp: float = Field(0.5, gt=0)
    tile_size: int = Field(336, ge=8)
    min_tissue: float = Field(0.5, ge=0, le=1)
    assume_mpp: float | None = Field(None, gt=0)
    workers: int = Field(2, ge=1)
    preview_dir: str | None = None
    verify_tiles: bool = False
    tissue: TissueSettings = TissueSettings()


class ModelSettings(_Section):
    name: str = "ViT-B-16"
    pretrained: str | None = None
    config_json: str | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    batch_size: int = Field(64, ge=1)
    reader_threads: int = Field(2, ge=1)


class StageSettings(_Section):
    provider: Literal["offline", "openai", "mistral"] = "offline"
    model: str = "offline"
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float = Field(0.2, ge=0, le=2)
    max_tokens: int = Field(512, ge=1)
    template: str | None = None
    price_input_per_1k: float = Field(0.0, ge=0)
    price_output_per_1k: float = Field(0.0, ge=0)
    #: Price of input tokens the provider served from its prompt cache (default: input price).
    price_cached_input_per_1k: float | None = Field(None, ge=0)
    max_concurrency: int = Field(16, ge=1)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    image_max_side: int = Field(672, ge=32)
    #: degrade: "rules" or "llm"; any caption stage: "batch" sends its calls through the
    #: provider's Batch API (degrade: the LLM mode, batched). See pathgen.runs.batches.
    mode: Literal["rules", "llm", "batch"] = "rules"
    #: Batch mode: seconds between polls of submitted batches, and the longest queued
    #: items wait for more before a batch is sent while earlier stages still make work.
    batch_poll_s: float = Field(30.0, gt=0)
    batch_wait_s: float = Field(300.0, ge=0)
    #: Spending limit of this stage in a run (see pathgen.runs.budget).
    max_cost_usd: float | None = Field(None, gt=0)


class InstructSettings(StageSettings):
    """The optional ``instruct`` stage: instruction-tuning / VQA items from the final
    description. ``provider = "offline"`` makes them from templates (no model call);
    otherwise the model writes them (``template``, default ``instruct_v1``) and a judge
    (``judge_template``, default ``instruct_judge_v1``, same provider and model) checks
    every answer against the description."""

    enabled: bool = False
    #: Items per tile of each type (label items need a manifest label or organ).
    open: int = Field(2, ge=0, le=10)
    yesno: int = Field(2, ge=0, le=10)
    choice: int = Field(1, ge=0, le=10)
    label: int = Field(2, ge=0, le=2)
    conversation: int = Field(1, ge=0, le=5)
    #: Most turns of a conversation (at least 2).
    max_turns: int = Field(4, ge=2, le=8)
    #: Send the tile image with the generation request (a VLM).
    with_image: bool = False
    judge_template: str | None = None
    max_tokens: int = Field(1500, ge=1)


class SelectionSettings(_Section):
    top_k: int = Field(64, ge=0)
    kmeans_k: int | None = Field(None, ge=1)
    max_diverse: int = Field(256, ge=0)
    kmeans_max_iter: int = Field(100, ge=1)
    kmeans_tol: float = Field(1e-4, ge=0)
    duplicate_threshold: float = Field(0.88, gt=0, le=1)
    seed: int = 0
    #: Also retrieve with prompts an LLM writes for the slide's organ (cached per run).
    llm_prompts: bool = False
    llm_prompt_count: int = Field(20, ge=1, le=100)
    llm: StageSettings | None = None

    @model_validator(mode="after")
    def _llm_for_prompts(self) -> SelectionSettings:
        if self.llm_prompts and (self.llm is None or self.llm.provider == "offline"):
            raise ValueError(
                "llm_prompts needs an LLM: set [selection.llm] with provider openai or mistral"
            )
        return self


class CaptionSettings(_Section):
    describe: StageSettings = StageSettings()
    degrade: StageSettings = StageSettings()
    revise: StageSettings = StageSettings()
    summarize: StageSettings = StageSettings(max_tokens=128)
    #: Extra describe models; when set, every tile is described by ``describe`` and each of
    #: these, and the ``fuse`` stage merges the descriptions before revision.
    describers: list[StageSettings] = Field(default_factory=list)
    fuse: StageSettings = StageSettings()
    instruct: InstructSettings = InstructSettings()
    degrade_copies: int = Field(1, ge=0)
    max_clip_tokens: int = Field(77, ge=8)
    #: Few-shot describe: put the captions of the k most similar reviewed (accepted or
    #: edited) tiles, and of reference images, into the describe prompt as examples.
    few_shot_k: int = Field(0, ge=0, le=16)
    #: CSV with ``image`` (path) and ``text`` columns: reference captions for few-shot.
    few_shot_references: str | None = None

    @field_validator("summarize", mode="before")
    @classmethod
    def _short_summaries(cls, value: Any) -> Any:
        """A summary is one CLIP caption: max_tokens defaults to 128 in this stage also
        when its section is given without it."""
        if isinstance(value, dict) and "max_tokens" not in value:
            return {**value, "max_tokens": 128}
        return value


class WorkerSettings(_Section):
    concurrency: int = Field(8, ge=1)
    lease_s: float = Field(120.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    #: Processes ``pathgen run`` spreads the online caption stages over, each with a share
    #: of every stage's limits ("auto": one per 128 concurrent calls, at most one per
    #: core; see pathgen.runs.shares).
    caption_processes: int | Literal["auto"] = "auto"

    @field_validator("caption_processes")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("caption_processes is a number of processes (1 or more) or auto")
        return value


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    run: RunSettings = RunSettings()
    tiling: TilingSettings = TilingSettings()
    model: ModelSettings = ModelSettings()
    selection: SelectionSettings = SelectionSettings()
    captioning: CaptionSettings = CaptionSettings()
    workers: WorkerSettings = WorkerSettings()

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy for the run record (holds no secrets by construction)."""
        return self.model_dump(mode="json")


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _describe_validation_error(
    err: ValidationError, path: str, from_env: dict[str, str] | None = None
) -> ConfigError:
    """The first problem, naming the file (or the environment variable that set the
    value: ``from_env`` maps dotted keys to variable names) and the key."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if from_env and key in from_env:
        path = f"environment variable {from_env[key]}"
    kind = first["type"]
    if kind == "extra_forbidden":
        return ConfigError("unknown key (check the spelling)", path=path, key=key)
    msg = first["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        got = type(first.get("input")).__name__
        msg = f"{msg} (got {got} {first.get('input')!r})"
    return ConfigError(msg, path=path, key=key)


#: Settings holding a file or folder path: relative ones in a config file are taken
#: relative to the file's folder (the working directory does not matter).
PATH_KEYS = (
    "run.manifest",
    "run.data_dir",
    "tiling.preview_dir",
    "model.pretrained",
    "model.config_json",
    "captioning.few_shot_references",
)
#: Settings that are a path only when they look like one (else a name: an open_clip
#: pretrained tag, a shipped prompt template); ``*`` stands for each LLM stage section.
MAYBE_PATH_KEYS = ("model.pretrained", "*.template")
_PATH_ENDINGS = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz", ".jinja2")
_SQLITE_PREFIX = "sqlite+aiosqlite:///"


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith(_PATH_ENDINGS)


def _as_path(value: Any, base: Path, *, maybe: bool) -> Any:
    """``value`` with ``~`` expanded and, when relative, taken from ``base``; names (and
    schemes like ``hf-hub:``) unchanged."""
    if not isinstance(value, str) or not value or (maybe and not _looks_like_path(value)):
        return value
    if ":" in value.split("/", 1)[0]:
        return value  # "hf-hub:org/model" and other schemes
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _stage_sections(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every LLM stage section of a raw config: captioning.<stage>, describers, selection.llm."""
    out: list[dict[str, Any]] = []
    cap = data.get("captioning")
    if isinstance(cap, dict):
        out += [v for k, v in cap.items() if isinstance(v, dict)]
        out += [v for v in cap.get("describers") or [] if isinstance(v, dict)]
    sel = data.get("selection")
    if isinstance(sel, dict) and isinstance(sel.get("llm"), dict):
        out.append(sel["llm"])
    return out


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make the config file's relative paths relative to ``base`` (its folder), in place."""
    for dotted in PATH_KEYS:
        *parents, leaf = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = _as_path(node[leaf], base, maybe=dotted in MAYBE_PATH_KEYS)
    for section in _stage_sections(data):
        for key in ("template", "judge_template"):
            if key in section:
                section[key] = _as_path(section[key], base, maybe=True)
    db = data.get("database")
    url = db.get("url") if isinstance(db, dict) else None
    if isinstance(url, str) and url.startswith(_SQLITE_PREFIX):
        db_path = url.removeprefix(_SQLITE_PREFIX)
        if db_path and db_path != ":memory:" and not Path(db_path).is_absolute():
            db["url"] = _SQLITE_PREFIX + str(base / db_path)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read ``path`` (or ``./pathgen.toml`` when it exists), apply env overrides, validate.

    Relative paths in the file (:data:`PATH_KEYS`, templates given as paths, a SQLite
    database) are relative to the file's folder; in environment overrides, to the working
    directory.
    Raises :class:`ConfigError` naming the file and key on any problem.
    """
    data: dict[str, Any] = {}
    shown = str(path) if path is not None else DEFAULT_CONFIG
    file = Path(path) if path is not None else Path(DEFAULT_CONFIG)
    if path is not None and not file.exists():
        raise ConfigError("file not found", path=shown)
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", path=shown) from None
        _resolve_paths(data, file.resolve().parent)
    from_env: dict[str, str] = {}
    for env, dotted in ENV_OVERRIDES.items():
        if os.environ.get(env):
            _set_dotted(data, dotted, os.environ[env])
            from_env[dotted] = env
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise _describe_validation_error(exc, shown, from_env) from None
