"""Compare two selections of the same slides: overlap, retrieval scores, coverage, duplicates.

A selection is named ``RUN`` (its current selection), ``RUN@N`` (round ``N``, see
:mod:`pathgen.store.selections`) or ``RUN@latest``. Both are scored on the slides they
share, under each selection's own CLIP model (so a retrained model and its base judge
both selections), from the per-slide tile embeddings the embed stage stored:

* ``retrieval_score``: mean over kept tiles of the best cosine with the run's retrieval
  prompts (what the selection's prompt retrieval maximises);
* ``cluster_coverage``: share of k-means clusters of all the slide's tiles (``k`` as the
  selection's default) holding at least one kept tile, over all slides;
* ``duplicate_rate``: share of kept tiles with another kept tile of the same slide at
  cosine >= 0.95.

Example::

    data = await load_selections(engine, "run-1@0", "run-1")
    metrics = compare_selections(data, {label: load_clip(s) for label, s in data.models.items()})
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pathgen.errors import ConfigError
from pathgen.eval.ranking import NEAR_DUPLICATE_COSINE, near_duplicate_flags
from pathgen.settings import ModelSettings
from pathgen.store.engine import read_scope
from pathgen.store.models import Embedding, RetrievalPrompt, Run, Tile
from pathgen.store.selections import current_round, round_tiles, rounds


@dataclass(frozen=True)
class SelectionSpec:
    run_id: str
    round: int | None  # None: the current selection

    @classmethod
    def parse(cls, text: str) -> SelectionSpec:
        """``RUN``, ``RUN@N`` or ``RUN@latest``."""
        run_id, _, which = text.partition("@")
        if not run_id:
            raise ConfigError(f"selection {text!r} needs a run id: RUN, RUN@N or RUN@latest")
        if which in ("", "latest"):
            return cls(run_id, None)
        if not which.isdigit():
            raise ConfigError(f"selection {text!r}: the round after @ must be a number")
        return cls(run_id, int(which))

    def __str__(self) -> str:
        return self.run_id if self.round is None else f"{self.run_id}@{self.round}"


@dataclass
class SelectionData:
    """Two selections with what scoring them needs (no model loaded)."""

    specs: dict[str, SelectionSpec]  # "a" / "b"
    kept: dict[str, dict[int, set[int]]]  # label -> slide id -> kept tile ids
    models: dict[str, ModelSettings]  # label -> model the selection was made with
    fingerprints: dict[str, set[str]]  # label -> fingerprints stored with its rows
    max_diverse: dict[str, int]
    prompts: dict[str, list[str]]  # run id -> retrieval prompt texts
    embeddings: dict[int, dict[str, str]] = field(default_factory=dict)  # slide -> fp -> path


async def _one(session: Any, spec: SelectionSpec) -> tuple[dict, ModelSettings, set[str], int]:
    run = await session.get(Run, spec.run_id)
    if run is None:
        raise ConfigError(f"no run {spec.run_id!r} in this database", key="--compare-selection")
    round_no = spec.round
    recorded = await rounds(session, spec.run_id)
    if round_no is not None and round_no > await current_round(session, spec.run_id):
        raise ConfigError(
            f"run {spec.run_id!r} has no selection round {round_no} "
            f"(rounds: {', '.join(map(str, sorted(recorded) or [0]))})",
            key="--compare-selection",
        )
    rows = await round_tiles(session, spec.run_id, round_no)
    if not rows:
        raise ConfigError(f"selection {spec} keeps no tiles", key="--compare-selection")
    slide_of = dict(
        (await session.execute(select(Tile.id, Tile.slide_id).where(Tile.id.in_(rows)))).all()
    )
    kept: dict[int, set[int]] = defaultdict(set)
    for tile_id in rows:
        kept[slide_of[tile_id]].add(tile_id)
    config = dict(run.config or {})
    if round_no is None:
        round_no = max((r.round for r in rows.values()), default=0)
    settings = recorded.get(round_no) or config
    model = ModelSettings.model_validate(settings.get("model") or {})
    max_diverse = int((settings.get("selection") or {}).get("max_diverse", 64))
    fingerprints = {r.model_fingerprint for r in rows.values() if r.model_fingerprint}
    return dict(kept), model, fingerprints, max_diverse


async def load_selections(engine: AsyncEngine, a: str, b: str) -> SelectionData:
    """Read selections ``a`` and ``b`` (specs as in the module docstring) and their inputs."""
    specs = {"a": SelectionSpec.parse(a), "b": SelectionSpec.parse(b)}
    async with read_scope(engine) as session:
        loaded = {label: await _one(session, spec) for label, spec in specs.items()}
        prompts = {}
        for spec in specs.values():
            prompts[spec.run_id] = sorted(
                set(
                    await session.scalars(
                        select(RetrievalPrompt.text).where(RetrievalPrompt.run_id == spec.run_id)
                    )
                )
            )
        slides = set(loaded["a"][0]) & set(loaded["b"][0])
        if not slides:
            raise ConfigError(f"selections {a} and {b} share no slide", key="--compare-selection")
        embeddings: dict[int, dict[str, str]] = defaultdict(dict)
        for row in await session.scalars(select(Embedding).where(Embedding.slide_id.in_(slides))):
            embeddings[row.slide_id][row.model_fingerprint] = row.path
    return SelectionData(
        specs=specs,
        kept={label: {s: v[0][s] for s in slides} for label, v in loaded.items()},
        models={label: v[1] for label, v in loaded.items()},
        fingerprints={label: v[2] for label, v in loaded.items()},
        max_diverse={label: v[3] for label, v in loaded.items()},
        prompts=prompts,
        embeddings=dict(embeddings),
    )


def _score(
    kept: dict[int, set[int]],
    slide_emb: dict[int, tuple[np.ndarray, np.ndarray]],
    prompt_emb: np.ndarray,
    max_diverse: int,
) -> dict[str, Any]:
    from pathgen.select.kmeans import default_k, kmeans

    best: list[float] = []
    covered = clusters = duplicates = n_kept = 0
    for slide, (ids, emb) in sorted(slide_emb.items()):
        mask = np.isin(ids, sorted(kept.get(slide, ())))
        x = emb[mask]
        n_kept += len(x)
        if len(x) and len(prompt_emb):
            best += (x @ prompt_emb.T).max(axis=1).tolist()
        duplicates += int(near_duplicate_flags(x, NEAR_DUPLICATE_COSINE).sum())
        k = default_k(len(ids), max_diverse)
        labels = kmeans(emb, k, seed=0).labels.cpu().numpy()
        clusters += len(set(labels.tolist()))
        covered += len(set(labels[mask].tolist()))
    return {
        "kept": n_kept,
        "retrieval_score": float(np.mean(best)) if best else None,
        "cluster_coverage": covered / clusters if clusters else None,
        "duplicate_rate": duplicates / n_kept if n_kept else None,
    }


def compare_selections(data: SelectionData, clips: dict[str, Any]) -> dict[str, Any]:
    """The comparison report section; ``clips`` are the loaded models of ``data.models``."""
    from pathgen.embed.files import load_embeddings

    a, b = data.kept["a"], data.kept["b"]
    tiles_a = set().union(*a.values())
    tiles_b = set().union(*b.values())
    both = tiles_a & tiles_b
    scored: dict[str, Any] = {}
    for label, clip in clips.items():
        slide_emb = {}
        for slide in sorted(a):
            path = data.embeddings.get(slide, {}).get(clip.fingerprint)
            if path is None:
                slide_emb = None
                break
            ids, emb, _ = load_embeddings(path)
            slide_emb[slide] = (ids, emb.astype(np.float32))
        name = f"{label}: {clip.name} ({data.models[label].pretrained or 'random init'})"
        if slide_emb is None:
            scored[name] = {"missing": f"no stored embeddings for {clip.fingerprint}"}
            continue
        runs = {spec.run_id for spec in data.specs.values()}
        texts = sorted({t for run in runs for t in data.prompts[run]})
        prompt_emb = clip.encode_texts(texts) if texts else np.zeros((0, clip.embed_dim))
        scored[name] = {
            side: _score(data.kept[side], slide_emb, prompt_emb, data.max_diverse[side])
            for side in ("a", "b")
        }
    sides = {
        side: {
            "selection": str(data.specs[side]),
            "model": data.models[side].model_dump(mode="json"),
            "made_with": sorted(data.fingerprints[side]),
            "kept": len(tiles),
        }
        for side, tiles in (("a", tiles_a), ("b", tiles_b))
    }
    return {
        **sides,
        "slides": len(a),
        "overlap": {
            "both": len(both),
            "only_a": len(tiles_a - both),
            "only_b": len(tiles_b - both),
            "jaccard": len(both) / len(tiles_a | tiles_b) if tiles_a | tiles_b else None,
        },
        "scored_by": scored,
        "per_slide": [
            {"slide": s, "a": len(a[s]), "b": len(b[s]), "both": len(a[s] & b[s])}
            for s in sorted(a)
        ],
    }
