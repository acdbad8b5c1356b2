"""Per-slide tile selection: top-k, clusters, planted duplicates, determinism; search."""

from __future__ import annotations

import numpy as np

from pathgen.select.dedupe import greedy_dedupe
from pathgen.select.search import search_by_vector, top_matches
from pathgen.select.tiles import diverse_sample, select_tiles, top_k_indices
from pathgen.settings import SelectionSettings


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _slide(n: int = 400, d: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = _unit(rng.standard_normal((6, d)))
    emb = _unit(means[rng.integers(0, 6, n)] + 0.5 * rng.standard_normal((n, d)) / np.sqrt(d) * 3)
    ids = np.arange(1000, 1000 + n)
    return ids, emb, rng


def test_selection_is_deterministic_for_a_seed():
    ids, emb, rng = _slide()
    prompts = _unit(rng.standard_normal((5, emb.shape[1])))
    settings = SelectionSettings(top_k=10, max_diverse=30, seed=4)
    kwargs = {"prompt_ids": [f"p{i}" for i in range(5)], "prompt_emb": prompts}
    a = select_tiles(ids, emb, settings, **kwargs)
    b = select_tiles(ids, emb, settings, **kwargs)
    assert a.decisions == b.decisions
    np.testing.assert_array_equal(a.cluster_labels, b.cluster_labels)


def test_planted_duplicates_are_dropped_and_point_to_the_kept_tile():
    ids, emb, rng = _slide(n=300)
    emb = emb.copy()
    # plant near-copies of tiles 0..4 at rows 200..204 (cosine ~0.99)
    for j in range(5):
        emb[200 + j] = _unit(emb[j] + 0.02 * rng.standard_normal(emb.shape[1]).astype(np.float32))
    prompt = _unit(rng.standard_normal((1, emb.shape[1])))
    # every tile is nominated (top_k = N), so only the dedupe decides
    settings = SelectionSettings(top_k=300, max_diverse=0, duplicate_threshold=0.9)
    res = select_tiles(ids, emb, settings, prompt_ids=["p"], prompt_emb=prompt)
    assert len(res.decisions) == 300
    dropped = {d.tile_id: d for d in res.decisions if not d.kept}
    assert len(dropped) == 5  # one of each planted pair, nothing else
    by_id = {d.tile_id: d for d in res.decisions}
    for j in range(5):
        a, b = by_id[ids[j]], by_id[ids[200 + j]]
        first, second = (a, b) if a.priority < b.priority else (b, a)
        assert first.kept and not second.kept
        assert second.duplicate_of == first.tile_id
        assert second.reasons == ["attribute"] and second.prompt_id == "p"
    kept = emb[[i - 1000 for i in res.kept_ids]]
    sims = kept @ kept.T - np.eye(len(kept))
    assert sims.max() < 0.9


def test_attribute_report_and_cluster_reasons():
    ids, emb, rng = _slide(n=200)
    d = emb.shape[1]
    lib = _unit(rng.standard_normal((3, d)))
    report = _unit(rng.standard_normal((2, d)))
    settings = SelectionSettings(top_k=5, max_diverse=12, kmeans_k=4, duplicate_threshold=0.999)
    res = select_tiles(
        ids, emb, settings, prompt_ids=["a", "b", "c"], prompt_emb=lib, report_emb=report
    )
    attr = (emb @ lib.T).max(1)
    rep = (emb @ report.T).sum(1)
    want_attr = set(ids[np.argsort(-attr, kind="stable")[:5]].tolist())
    want_rep = set(ids[np.argsort(-rep, kind="stable")[:5]].tolist())
    got_attr = {x.tile_id for x in res.decisions if "attribute" in x.reasons}
    got_rep = {x.tile_id for x in res.decisions if "report" in x.reasons}
    got_cluster = [x for x in res.decisions if "cluster" in x.reasons]
    assert got_attr == want_attr and got_rep == want_rep
    assert len(got_cluster) == 12 and res.k == 4
    assert {x.cluster_id for x in got_cluster} == {0, 1, 2, 3}  # every cluster is sampled
    for x in res.decisions:
        i = x.tile_id - 1000
        assert x.prompt_id == "abc"[int(np.argmax(emb[i] @ lib.T))]
        assert np.isclose(x.score, attr[i], atol=1e-5) and np.isclose(
            x.report_score, rep[i], atol=1e-5
        )
    assert all(x.kept for x in res.decisions)
    assert [x.priority for x in res.decisions] == list(range(len(res.decisions)))


def test_top_k_ties_keep_input_order():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    assert top_k_indices(scores, 3).tolist() == [1, 3, 0]
    assert top_k_indices(scores, 0).tolist() == []


def test_diverse_sample_round_robin_nearest_first():
    emb = np.array([[0.0], [1.0], [0.1], [10.0], [10.2], [9.0]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    centers = np.array([[0.0], [10.0]], dtype=np.float32)
    assert diverse_sample(emb, labels, centers, 5).tolist() == [0, 3, 2, 4, 1]


def test_greedy_dedupe():
    a = _unit(np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.7, 0.7], [0.05, 1.0]]))
    assert greedy_dedupe(a, 0.95).tolist() == [-1, 0, -1, -1, 2]
    assert greedy_dedupe(a, 1.0).tolist() == [-1, -1, -1, -1, -1]


def test_empty_slide():
    res = select_tiles([], np.zeros((0, 8), np.float32))
    assert res.decisions == [] and res.k == 0


def test_streaming_top_matches_equals_brute_force():
    rng = np.random.default_rng(3)
    chunks = []
    for s in range(6):
        n = int(rng.integers(0, 40))
        chunks.append((np.arange(s * 100, s * 100 + n), _unit(rng.standard_normal((n, 16)))))
    q = _unit(rng.standard_normal(16))
    got = top_matches(q, iter(chunks), top=15)
    all_ids = np.concatenate([c[0] for c in chunks])
    all_emb = np.concatenate([c[1] for c in chunks])
    scores = all_emb @ q
    order = np.argsort(-scores, kind="stable")[:15]
    assert [i for i, _ in got] == all_ids[order].tolist()
    np.testing.assert_allclose([s for _, s in got], scores[order], rtol=1e-6)
    again = search_by_vector(3 * q, chunks, top=15)
    assert [i for i, _ in again] == [i for i, _ in got]
    np.testing.assert_allclose([s for _, s in again], [s for _, s in got], rtol=1e-5)
    assert top_matches(q, chunks, top=0) == []
