"""Compute a run's caption-quality metrics from its records, the CLIP model and references.

Groups: every ``ok`` caption-branch revision is grouped by ``stage/provider:model``, plus a
``final`` group (each tile's final caption). Per group:

* ``clip_score``: cosine of the tile's CLIP image embedding and the caption's CLIP text
  embedding (the tokenizer truncates to the context length);
* ``words`` and ``clip_tokens`` (:meth:`ClipModel.count_tokens`, untruncated) distributions
  and ``over_context_rate`` (captions longer than the CLIP context);
* ``distinct_1``, ``distinct_2``, ``type_token_ratio`` over the group's captions;
* ``exact_duplicate_rate`` (normalised text shared with another caption of the group) and
  ``near_duplicate_rate`` (text embedding cosine >= 0.95 with another caption of the group;
  embedder named in ``near_duplicate_embedder``: Sentence-BERT MiniLM when given, else CLIP);
* ``retrieval``: recall@1/5/10 of the tile among all evaluated tiles, querying with the
  group's newest caption per tile;
* ``references`` (when given): BLEU-4, ROUGE-L F and Sentence-BERT cosine against them.

Run-level: reviser recovery (:mod:`pathgen.eval.recovery_metrics`), human review rates and
the instruct items' type mix, yes/no balance and verification failures
(:mod:`pathgen.eval.instruct_metrics`).

Example::

    metrics = evaluate_run(data, clip, slides=SlideCache(16), references=refs, sentence=sbert)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pathgen.embed.model import ClipModel
from pathgen.eval.instruct_metrics import instruct_summary
from pathgen.eval.ranking import (
    NEAR_DUPLICATE_COSINE,
    exact_duplicate_rate,
    near_duplicate_rate,
    recall_at_k,
)
from pathgen.eval.records import RevisionRecord, RunData
from pathgen.eval.recovery_metrics import recovery_summary
from pathgen.eval.review_metrics import describe, review_summary
from pathgen.eval.semantic import SentenceModel, paired_cosine
from pathgen.eval.text_metrics import bleu4, distinct_n, rouge_l, type_token_ratio, words
from pathgen.eval.tile_images import TileImageCache
from pathgen.slides import SlideCache

RECALL_KS = (1, 5, 10)


class _TextCache:
    def __init__(self, clip: ClipModel) -> None:
        self.clip = clip
        self._emb: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self._emb})
        if todo:
            for text, row in zip(todo, self.clip.encode_texts(todo), strict=True):
                self._emb[text] = row
        if not texts:
            return np.zeros((0, self.clip.embed_dim), dtype=np.float32)
        return np.stack([self._emb[t] for t in texts])


def caption_groups(data: RunData) -> dict[str, list[RevisionRecord]]:
    """``{group: revisions}`` for ok caption-branch revisions, plus ``final``."""
    groups: dict[str, list[RevisionRecord]] = defaultdict(list)
    by_id = {r.id: r for r in data.revisions}
    for rev in data.revisions:
        if rev.status == "ok" and rev.branch == "caption":
            groups[rev.group].append(rev)
    finals = [by_id[i] for i in sorted(data.final_revision_ids.values()) if i in by_id]
    if finals:
        groups["final"] = finals
    return dict(sorted(groups.items()))


def newest_per_tile(revs: Sequence[RevisionRecord]) -> list[RevisionRecord]:
    """The newest revision of each tile, ordered by tile id."""
    newest: dict[int, RevisionRecord] = {}
    for rev in revs:
        if rev.tile_id not in newest or rev.id > newest[rev.tile_id].id:
            newest[rev.tile_id] = rev
    return [newest[t] for t in sorted(newest)]


def _retrieval(
    texts: Sequence[str],
    tiles: Sequence[int],
    gallery_ids: list[int],
    gallery: np.ndarray,
    text_cache: _TextCache,
) -> dict[str, Any]:
    index = {t: i for i, t in enumerate(gallery_ids)}
    pairs = [(text, index[t]) for text, t in zip(texts, tiles, strict=True) if t in index]
    if not pairs:
        return {"queries": 0, "gallery": len(gallery_ids), **{f"r@{k}": None for k in RECALL_KS}}
    sim = text_cache.encode([p[0] for p in pairs]) @ gallery.T
    recalls = recall_at_k(sim, [p[1] for p in pairs], RECALL_KS)
    return {
        "queries": len(pairs),
        "gallery": len(gallery_ids),
        **{f"r@{k}": v for k, v in recalls.items()},
    }


def _reference_scores(
    hyps: Sequence[str], refs: Sequence[str], sentence: SentenceModel | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(hyps)}
    out["bleu4"] = bleu4(hyps, refs)
    rouge = [rouge_l(h, r)["f"] for h, r in zip(hyps, refs, strict=True)]
    out["rouge_l_f"] = float(np.mean(rouge)) if rouge else None
    if sentence is not None and hyps:
        cos = paired_cosine(sentence.encode(hyps), sentence.encode(refs))
        out["sbert_cosine"] = describe(cos.tolist())
    else:
        out["sbert_cosine"] = None
    return out


def _examples(
    revs: Sequence[RevisionRecord], scores: Sequence[float], n: int = 3
) -> dict[str, list[dict[str, Any]]]:
    """The ``n`` captions with the lowest and the highest CLIP score (text is untrusted)."""
    order = sorted(range(len(revs)), key=lambda i: (scores[i], revs[i].id))

    def pick(idx: Sequence[int]) -> list[dict[str, Any]]:
        return [
            {
                "tile_id": revs[i].tile_id,
                "revision_id": revs[i].id,
                "score": scores[i],
                "text": revs[i].text,
            }
            for i in idx
        ]

    return {"lowest": pick(order[:n]), "highest": pick(order[::-1][:n])}


def _group_metrics(
    revs: list[RevisionRecord],
    clip: ClipModel,
    images: Mapping[int, np.ndarray],
    gallery_ids: list[int],
    gallery: np.ndarray,
    text_cache: _TextCache,
    references: Mapping[int, str],
    sentence: SentenceModel | None,
) -> dict[str, Any]:
    texts = [r.text for r in revs]
    scored = [r for r in revs if r.tile_id in images]
    scores = []
    if scored:
        text_emb = text_cache.encode([r.text for r in scored])
        img_emb = np.stack([images[r.tile_id] for r in scored])
        scores = paired_cosine(text_emb, img_emb).tolist()
    n_words = [len(words(t)) for t in texts]
    n_tokens = [clip.count_tokens(t) for t in texts]
    if sentence is not None:
        dup_emb, dup_embedder = sentence.encode(texts), "all-MiniLM-L6-v2"
    else:
        dup_emb, dup_embedder = text_cache.encode(texts), f"clip:{clip.name}"
    newest = newest_per_tile(revs)
    out: dict[str, Any] = {
        "captions": len(revs),
        "tiles": len({r.tile_id for r in revs}),
        "clip_score": describe(scores),
        "words": describe(n_words),
        "clip_tokens": describe(n_tokens),
        "over_context_rate": (
            sum(n > clip.context_length for n in n_tokens) / len(n_tokens) if n_tokens else None
        ),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "type_token_ratio": type_token_ratio(texts),
        "exact_duplicate_rate": exact_duplicate_rate(texts),
        "near_duplicate_rate": near_duplicate_rate(dup_emb, NEAR_DUPLICATE_COSINE),
        "near_duplicate_embedder": dup_embedder,
        "retrieval": _retrieval(
            [r.text for r in newest], [r.tile_id for r in newest], gallery_ids, gallery, text_cache
        ),
        "distributions": {"clip_score": scores, "words": n_words, "clip_tokens": n_tokens},
        "examples": _examples(scored, scores),
    }
    with_ref = [r for r in newest if r.tile_id in references]
    out["references"] = (
        _reference_scores(
            [r.text for r in with_ref], [references[r.tile_id] for r in with_ref], sentence
        )
        if with_ref
        else None
    )
    return out


def evaluate_run(
    data: RunData,
    clip: ClipModel,
    *,
    slides: SlideCache | None = None,
    references: Mapping[int, str] | None = None,
    sentence: SentenceModel | None = None,
    reader_threads: int = 2,
) -> dict[str, Any]:
    """All metrics of one run as a JSON-serialisable dict (see the module docstring)."""
    references = references or {}
    image_cache = TileImageCache(clip, slides or SlideCache(max_open=16), reader_threads)
    tiles = [data.tiles[t] for t in sorted(data.tiles)]
    images = image_cache.embeddings(tiles)
    gallery_ids = sorted(images)
    gallery = (
        np.stack([images[t] for t in gallery_ids])
        if gallery_ids
        else np.zeros((0, clip.embed_dim), dtype=np.float32)
    )
    text_cache = _TextCache(clip)
    groups = {
        name: _group_metrics(
            revs, clip, images, gallery_ids, gallery, text_cache, references, sentence
        )
        for name, revs in caption_groups(data).items()
    }
    ref_baseline = None
    if references:
        ref_tiles = [t for t in sorted(references) if t in images]
        ref_texts = [references[t] for t in ref_tiles]
        ref_scores = (
            paired_cosine(text_cache.encode(ref_texts), np.stack([images[t] for t in ref_tiles]))
            if ref_tiles
            else np.zeros(0)
        )
        ref_baseline = {
            "tiles": len(references),
            "clip_score": describe(ref_scores.tolist()),
            "retrieval": _retrieval(ref_texts, ref_tiles, gallery_ids, gallery, text_cache),
        }
    return {
        "run_id": data.run_id,
        "model": {"name": clip.name, "fingerprint": clip.fingerprint},
        "tiles": {
            "captioned": len(data.tiles),
            "embedded": len(gallery_ids),
            "unreadable": dict(sorted(image_cache.errors.items())),
        },
        "near_duplicate_threshold": NEAR_DUPLICATE_COSINE,
        "groups": groups,
        "recovery": recovery_summary(data.revisions),
        "review": review_summary(data),
        "references": ref_baseline,
        "instruct": instruct_summary(data.instruct),
    }
