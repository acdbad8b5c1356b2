"""Loading CLIP models through the user path: config JSON + checkpoint file, errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from pathgen.embed.model import file_sha256, load_clip, register_model_config
from pathgen.embed.tiny import tiny_config_path
from pathgen.errors import ConfigError, ModelLoadError
from pathgen.settings import ModelSettings
from tests.clip_helpers import TINY_CONFIG, tiny_settings


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8))


def _reference_model(tmp_path, seed: int = 3):
    """A tiny model built in memory, saved as a bare state_dict like PathGen-CLIP .pt files."""
    name, _ = register_model_config(TINY_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained_text=False)
    model.eval()
    ckpt = tmp_path / "ref.pt"
    torch.save(model.state_dict(), ckpt)
    return model, preprocess, ckpt


def test_shipped_configs_agree():
    assert json.loads(TINY_CONFIG.read_text()) == json.loads(tiny_config_path().read_text())


def test_checkpoint_round_trip_gives_same_outputs(tmp_path):
    model, preprocess, ckpt = _reference_model(tmp_path)
    clip = load_clip(
        ModelSettings(config_json=str(TINY_CONFIG), pretrained=str(ckpt), device="cpu")
    )
    images = [_image(0), _image(1)]
    with torch.inference_mode():
        pixels = torch.stack([preprocess(im) for im in images])
        ref = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1).numpy()
        tokens = open_clip.get_tokenizer("tiny_clip")(["tumour nests", "adipose tissue"])
        ref_txt = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    np.testing.assert_allclose(clip.encode_images(images), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        clip.encode_texts(["tumour nests", "adipose tissue"]), ref_txt, rtol=0, atol=1e-6
    )
    assert (
        clip.fingerprint == f"tiny_clip:{clip.fingerprint.split(':')[1]}:sha256-{file_sha256(ckpt)}"
    )
    assert clip.name == "tiny_clip" and clip.context_length == 77 and clip.embed_dim == 64


def test_wrapped_and_module_prefixed_checkpoint_loads(tmp_path):
    model, _, ckpt = _reference_model(tmp_path)
    wrapped = tmp_path / "wrapped.pt"
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3}, wrapped)
    a = load_clip(ModelSettings(config_json=str(TINY_CONFIG), pretrained=str(ckpt), device="cpu"))
    b = load_clip(
        ModelSettings(config_json=str(TINY_CONFIG), pretrained=str(wrapped), device="cpu")
    )
    img = [_image(5)]
    np.testing.assert_array_equal(a.encode_images(img), b.encode_images(img))
    assert a.fingerprint != b.fingerprint  # different files, different sha256


def test_same_seed_same_weights_and_deterministic_outputs(tmp_path):
    a = load_clip(tiny_settings(tmp_path / "a", seed=7))
    b = load_clip(tiny_settings(tmp_path / "b", seed=7))
    c = load_clip(tiny_settings(tmp_path / "c", seed=8))
    img = [_image(2)]
    assert a.fingerprint == b.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.encode_images(img), b.encode_images(img))
    assert not np.allclose(a.encode_images(img), c.encode_images(img))


def test_outputs_are_unit_norm_and_score_is_cosine(tmp_path):
    clip = load_clip(tiny_settings(tmp_path))
    img = _image(4)
    emb = clip.encode_images([img])
    txt = clip.encode_texts(["necrosis", "fibrous stroma", "lymphocytes"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        clip.score(img, ["necrosis", "lymphocytes"]), txt[[0, 2]] @ emb[0], atol=1e-5
    )
    assert emb.dtype == np.float32 and emb.shape == (1, 64)


def test_count_tokens_is_untruncated_with_start_and_end(tmp_path):
    clip = load_clip(tiny_settings(tmp_path))
    for text in ["tumour", "invasive ductal carcinoma", "Mitoses: 3/10 HPF; necrosis."]:
        padded = clip.tokenizer([text])[0]
        assert clip.count_tokens(text) == int((padded != 0).sum())
    per_word = clip.count_tokens("carcinoma") - 2
    long = " ".join(["carcinoma"] * 100)
    assert clip.count_tokens(long) == 100 * per_word + 2 > 77  # not truncated to the context


def test_random_init_is_logged_loudly(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        clip = load_clip(ModelSettings(config_json=str(TINY_CONFIG), device="cpu"), seed=11)
    assert "RANDOM WEIGHTS" in caplog.text
    assert ":random-init:11:" in clip.fingerprint


def test_missing_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "pathgen-clip-l.pt"
    with pytest.raises(ModelLoadError) as err:
        load_clip(ModelSettings(config_json=str(TINY_CONFIG), pretrained=str(missing)))
    assert str(missing) in str(err.value) and "not found" in str(err.value)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "wrong-arch"])
def test_corrupt_checkpoint_names_the_path(tmp_path, kind):
    model, _, ckpt = _reference_model(tmp_path)
    bad = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        bad.write_bytes(b"this is not a checkpoint" * 100)
    elif kind == "truncated":
        bad.write_bytes(ckpt.read_bytes()[:200_000])
    else:
        sd = model.state_dict()
        sd.pop("logit_scale")
        sd["visual.extra"] = torch.zeros(3)
        torch.save(sd, bad)
    with pytest.raises(ModelLoadError) as err:
        load_clip(ModelSettings(config_json=str(TINY_CONFIG), pretrained=str(bad)))
    assert str(bad) in str(err.value)


def test_unknown_tag_is_refused_without_download(tmp_path):
    with pytest.raises(ModelLoadError, match="neither an existing file nor"):
        load_clip(ModelSettings(config_json=str(TINY_CONFIG), pretrained="laion2b_s34b_b79k"))


def test_unknown_model_name():
    with pytest.raises(ModelLoadError, match="unknown open_clip model"):
        load_clip(ModelSettings(name="ViT-Nope-99"))


def test_bad_config_json(tmp_path):
    bad = tmp_path / "mine.json"
    bad.write_text('{"embed_dim": 64}')
    with pytest.raises(ConfigError, match="mine.json"):
        load_clip(ModelSettings(config_json=str(bad)))
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_clip(ModelSettings(config_json=str(bad)))


def test_config_name_field_sets_model_name(tmp_path):
    cfg = json.loads(TINY_CONFIG.read_text())
    cfg["name"] = "my-path-clip"
    path = tmp_path / "whatever.json"
    path.write_text(json.dumps(cfg))
    clip = load_clip(ModelSettings(config_json=str(path), device="cpu"))
    assert clip.name == "my-path-clip" and clip.fingerprint.startswith("my-path-clip:")
