"""What stage handlers share inside one worker process: settings, engine, slides, models.

Heavy resources (the CLIP model, LLM clients) are created on first use, once per
process, and closed with the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.runs.shares import share
from pathgen.settings import ModelSettings, Settings, StageSettings


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    _clip: Any = None
    _slides: Any = None
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _text_cache: dict[str, Any] = field(default_factory=dict)
    _few_shot: Any = None
    _images: Any = None
    _tokens: Any = None
    #: Clients by stage and the id of its settings object when that is one of
    #: ``settings`` (the hot path: no settings dump per call).
    _stage_clients: dict[tuple[str, int], Any] = field(default_factory=dict)
    #: Where the processes of a run on this machine share encoded tiles (None: not shared).
    images_dir: Path | None = None

    @property
    def few_shot(self) -> Any:
        """The few-shot example index (built on first use)."""
        if self._few_shot is None:
            from pathgen.runs.fewshot import FewShotIndex

            self._few_shot = FewShotIndex(self)
        return self._few_shot

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.run.data_dir)

    @property
    def slides(self) -> Any:
        """One :class:`pathgen.slides.SlideCache` per process: a slide is opened once."""
        if self._slides is None:
            from pathgen.slides import SlideCache

            self._slides = SlideCache(max_open=16)
        return self._slides

    @property
    def images(self) -> Any:
        """Tile images for the VLM stages (:class:`pathgen.runs.tile_images.TileImages`):
        read and encoded once per tile in a bounded thread pool, kept in a cache bounded in
        bytes."""
        if self._images is None:
            from pathgen.runs.tile_images import TileImages

            self._images = TileImages(self.slides, threads=4, shared_dir=self.images_dir)
        return self._images

    async def clip(self) -> Any:
        """The run's CLIP model (loaded in a thread on first use)."""
        async with self._lock:
            if self._clip is None:
                from pathgen.embed import load_clip

                self._clip = await asyncio.to_thread(load_clip, self.settings.model)
        return self._clip

    async def count_tokens(self) -> Callable[[str], int]:
        """The run's CLIP token count: the loaded model's, else its tokenizer alone (a
        process that only summarizes builds no model)."""
        async with self._lock:
            if self._clip is not None:
                return self._clip.count_tokens
            if self._tokens is None:
                from pathgen.embed import load_tokens

                self._tokens = await asyncio.to_thread(load_tokens, self.settings.model)
        return self._tokens.count

    async def text_embeddings(self, texts: list[str]) -> Any:
        """CLIP text embeddings, cached by text for the life of the worker."""
        import numpy as np

        clip = await self.clip()
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            emb = await asyncio.to_thread(clip.encode_texts, missing)
            self._text_cache.update(zip(missing, emb, strict=True))
        if not texts:
            return np.zeros((0, clip.embed_dim), dtype=np.float32)
        return np.stack([self._text_cache[t] for t in texts])

    async def client(self, stage: str, cfg: StageSettings | None = None) -> Any:
        """One LLM client per stage and configuration (shared by all items of the stage);
        ``cfg`` defaults to ``captioning.<stage>`` (a describer's, select's LLM, ...)."""
        fast = (stage, id(cfg))
        if fast in self._stage_clients:
            return self._stage_clients[fast]
        stable = cfg is None or _owned(self.settings, cfg)  # its id stays its own
        if cfg is None:
            cfg = getattr(self.settings.captioning, stage)
        key = (stage, cfg.model_dump_json())
        clip = await self.clip() if cfg.provider == "offline" else None
        async with self._lock:
            if key not in self._clients:
                if clip is not None:
                    from pathgen.stages.offline import make_offline_client

                    self._clients[key] = make_offline_client(cfg, clip)
                else:
                    from pathgen.llm.factory import make_client

                    self._clients[key] = make_client(cfg)
            if stable:
                self._stage_clients[fast] = self._clients[key]
            return self._clients[key]

    def calls_in_flight(self) -> dict[str, int]:
        """Requests each stage's provider clients have sent and not had answered yet."""
        found: dict[str, int] = {}
        for (stage, _), client in self._clients.items():
            found[stage] = found.get(stage, 0) + getattr(client, "in_flight", 0)
        return found

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        self._stage_clients.clear()
        if self._images is not None:
            self._images.close()
        if self._slides is not None:
            self._slides.clear()


def _owned(settings: Settings, cfg: StageSettings) -> bool:
    """``cfg`` is one of the caption stage settings objects ``settings`` holds (so its id
    stays its own for as long as ``settings`` lives)."""
    captioning = settings.captioning
    return any(cfg is c for c in captioning.describers) or any(
        cfg is getattr(captioning, name, None)
        for name in ("describe", "fuse", "degrade", "revise", "summarize")
    )


class RunResources:
    """Resources per run, built from each run's own config snapshot.

    A worker may serve several runs; each run's pipeline parameters (model, tiling,
    prompts, providers) come from the snapshot stored when the run was created, while
    the database URL and data directory are this worker's own (shared storage).
    A model the preflight loaded is handed over with :meth:`preload`. A process that is
    one of ``part = (index, count)`` sharing the run's caption stages gets its share of
    each stage's limits (:func:`pathgen.runs.shares.share`); such processes share encoded
    tiles through ``images_dir``.
    """

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        part: tuple[int, int] = (0, 1),
        images_dir: Path | None = None,
    ) -> None:
        self._part = part
        self.images_dir = images_dir
        self.settings = share(settings, *part)
        self.engine = engine
        self._preloaded: list[tuple[ModelSettings, Any]] = []
        self._by_run: dict[str, Resources] = {}
        self._configs: dict[str, Any] = {}
        self._retired: list[tuple[str, Resources]] = []  # (run_id, its old resources)
        self._lock = asyncio.Lock()

    async def _stored_config(self, run_id: str) -> dict[str, Any] | None:
        from pathgen.store.engine import read_scope
        from pathgen.store.models import Run

        async with read_scope(self.engine) as session:
            run = await session.get(Run, run_id)
        return run.config if run is not None and run.config else None

    def _with_local(self, config: dict[str, Any] | None) -> Settings:
        """A stored snapshot with this process's database, data dir and workers."""
        if config is None:
            return self.settings
        snap = share(Settings.model_validate(config), *self._part)
        return snap.model_copy(
            update={
                "database": self.settings.database,
                "run": snap.run.model_copy(update={"data_dir": self.settings.run.data_dir}),
                "workers": self.settings.workers,
            }
        )

    async def run_settings(self, run_id: str) -> Settings:
        """The run's stored settings with this process's database, data dir and workers."""
        return self._with_local(await self._stored_config(run_id))

    def preload(self, model: ModelSettings, clip: Any) -> None:
        """Keep a model already loaded for ``model``, for the runs configured with it."""
        if clip is not None:
            self._preloaded.append((model, clip))

    async def for_run(self, run_id: str, *, fresh: bool = False) -> Resources:
        """The run's resources; ``fresh`` rebuilds them when the run's stored settings
        changed since (``run --redo select`` with a new model, seen by a running worker)."""
        async with self._lock:
            if fresh or run_id not in self._by_run:
                config = await self._stored_config(run_id)
                if run_id in self._by_run and self._configs.get(run_id) == config:
                    return self._by_run[run_id]
                if run_id in self._by_run:  # items in flight may still use the old ones
                    self._retired.append((run_id, self._by_run.pop(run_id)))
                self._configs[run_id] = config
                settings = self._with_local(config)
                res = Resources(settings, self.engine, images_dir=self.images_dir)
                res._clip = next((c for m, c in self._preloaded if m == settings.model), None)
                self._by_run[run_id] = res
            return self._by_run[run_id]

    def calls_in_flight(self) -> dict[tuple[str, str], int]:
        """Provider calls sent and not answered yet, per ``(run_id, stage)``."""
        found: dict[tuple[str, str], int] = {}
        for run_id, res in [*self._by_run.items(), *self._retired]:
            for stage, n in res.calls_in_flight().items():
                found[run_id, stage] = found.get((run_id, stage), 0) + n
        return found

    async def aclose(self) -> None:
        for res in [*self._by_run.values(), *(r for _, r in self._retired)]:
            await res.aclose()
        self._by_run.clear()
        self._retired.clear()
