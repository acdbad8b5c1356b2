"""embed_tiles (threaded reads + batched forward), embedding files, zero-shot helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pathgen.embed.files import embedding_path, load_embeddings, save_embeddings
from pathgen.embed.tiles import embed_tiles
from pathgen.embed.zeroshot import classify, zeroshot_classifier
from pathgen.errors import StoreError
from tests.clip_helpers import load_tiny_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_tiny_clip(tmp_path_factory.mktemp("tiny"))


def _jpeg_tiles(n: int, size: int = 96) -> list[bytes]:
    rng = np.random.default_rng(0)
    tiles = []
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        arr[: size // 2] = (i * 37) % 256  # make tiles differ beyond noise
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        tiles.append(buf.getvalue())
    return tiles


def _read(blob: bytes) -> Image.Image:
    return Image.open(io.BytesIO(blob))


def test_embeddings_match_direct_encoding_and_repeat_exactly(clip):
    tiles = _jpeg_tiles(23)
    first = embed_tiles(clip, tiles, _read, batch_size=5, reader_threads=3)
    second = embed_tiles(clip, tiles, _read, batch_size=8, reader_threads=1)
    assert first.embeddings.dtype == np.float16 and first.embeddings.shape == (23, clip.embed_dim)
    assert first.ok.all() and not first.errors
    np.testing.assert_array_equal(
        first.embeddings, embed_tiles(clip, tiles, _read, 5, 3).embeddings
    )
    direct = clip.encode_images([_read(t) for t in tiles])
    np.testing.assert_allclose(first.embeddings.astype(np.float32), direct, atol=2e-3)
    np.testing.assert_allclose(second.embeddings.astype(np.float32), direct, atol=2e-3)


def test_a_failing_read_skips_only_that_tile(clip):
    tiles = list(enumerate(_jpeg_tiles(10)))

    def read(tile: tuple[int, bytes]) -> Image.Image:
        idx, blob = tile
        if idx == 6:
            raise OSError("corrupt JPEG tile at level 0")
        return _read(blob)

    result = embed_tiles(clip, tiles, read, batch_size=4, reader_threads=2)
    assert result.failed == [6] and "corrupt JPEG" in result.errors[6]
    assert result.ok.tolist() == [i != 6 for i in range(10)]
    assert result.embeddings.shape == (9, clip.embed_dim)
    assert [t[0] for t in result.select(tiles)] == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    full = embed_tiles(clip, [b for _, b in tiles], _read, batch_size=4)
    # batches are composed differently once a tile is missing: equal up to float16 rounding
    np.testing.assert_allclose(
        result.embeddings.astype(np.float32),
        full.embeddings[result.ok].astype(np.float32),
        atol=2e-3,
    )


def test_empty_and_all_failing(clip):
    assert embed_tiles(clip, [], _read).embeddings.shape == (0, clip.embed_dim)

    def broken(_: object) -> Image.Image:
        raise ValueError("no pixels")

    res = embed_tiles(clip, [1, 2, 3], broken, batch_size=2)
    assert res.failed == [0, 1, 2] and res.embeddings.shape == (0, clip.embed_dim)


def test_embedding_file_round_trip_is_atomic(tmp_path):
    fp = "ViT-L-14-336:cfg-abc:sha256-0123"
    path = embedding_path(tmp_path, fp, "cases/TCGA A1:01.svs")
    assert path == embedding_path(tmp_path, fp, "cases/TCGA A1:01.svs")
    assert path != embedding_path(tmp_path, fp + "x", "cases/TCGA A1:01.svs")
    assert path != embedding_path(tmp_path, fp, "cases/TCGA A1:02.svs")
    assert path.is_relative_to(tmp_path / "embeddings")
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((7, 16)).astype(np.float32)
    save_embeddings(path, [5, 9, 11, 12, 13, 20, 21], emb, fp)
    ids, loaded, fingerprint = load_embeddings(path)
    assert ids.tolist() == [5, 9, 11, 12, 13, 20, 21] and fingerprint == fp
    assert loaded.dtype == np.float16
    np.testing.assert_array_equal(loaded, emb.astype(np.float16))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left
    with pytest.raises(ValueError):
        save_embeddings(path, [1, 2], emb, fp)


def test_unreadable_embedding_file(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(StoreError, match="x.npz"):
        load_embeddings(path)
    with pytest.raises(StoreError, match="missing"):
        load_embeddings(tmp_path / "absent.npz")


class _FakeTextEncoder:
    """Maps each text to a fixed unit vector by the class word it contains."""

    def __init__(self, vocab: dict[str, np.ndarray]) -> None:
        self.vocab = vocab

    def encode_texts(self, texts):
        rows = []
        for text in texts:
            word = next(w for w in self.vocab if w in text)
            v = self.vocab[word] + 0.01 * len(text)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows).astype(np.float32)


def test_zeroshot_prompt_ensemble_and_classify():
    eye = np.eye(4, dtype=np.float32)
    enc = _FakeTextEncoder({"tumor": eye[0], "stroma": eye[1], "fat": eye[2]})
    class_emb = zeroshot_classifier(enc, ["tumor", "stroma", "fat"], ["an H&E image of {}.", "{}"])
    assert class_emb.shape == (3, 4)
    np.testing.assert_allclose(np.linalg.norm(class_emb, axis=1), 1.0, atol=1e-6)
    images = np.stack([eye[1], eye[0], eye[2] + 0.2 * eye[0]])
    pred, probs = classify(images, class_emb)
    assert pred.tolist() == [1, 0, 2]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


def test_zeroshot_with_real_tiny_model(clip):
    class_emb = zeroshot_classifier(clip, ["tumor", "stroma"])
    assert class_emb.shape == (2, clip.embed_dim)
    img_emb = clip.encode_images([_read(_jpeg_tiles(1)[0])])
    pred, probs = classify(img_emb, class_emb)
    assert pred.shape == (1,) and probs.shape == (1, 2)
