"""The offline provider: CLIP baselines for describe/degrade/revise/summarize, no network.

Uses a real open_clip model with a tiny config and random weights (never downloaded) and
a real H&E tile, plus a transparent bag-of-words scorer to check the decision logic.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pathgen.errors import ProviderError
from pathgen.llm.base import ChatRequest, LLMClient, Message
from pathgen.settings import StageSettings
from pathgen.stages import (
    ClipScorer,
    DescribeInput,
    degrade_rules,
    run_degrade,
    run_describe,
    run_revise,
    run_summarize,
)
from pathgen.stages.clip_baseline import (
    OptionEmbeddings,
    describe_with_clip,
    revise_with_clip,
    summarize_extractive,
)
from pathgen.stages.offline import OfflineClient, make_offline_client
from pathgen.stages.text import split_sentences
from pathgen.stages.vocabulary import load_contrast_vocabulary, load_morphology_vocabulary

SLIDE = Path(__file__).resolve().parents[2] / "shared/testdata/slides/CMU-1-Small-Region.svs"
OFFLINE = StageSettings(provider="offline", model="offline")
LONG = (
    "The tissue shows an infiltrating malignant epithelial tumour arranged in irregular "
    "glands and solid nests. The tumour is moderately differentiated. The nuclei show marked "
    "nuclear pleomorphism with vesicular chromatin and prominent nucleoli. Mitotic figures are "
    "numerous, including atypical forms. The surrounding stroma is desmoplastic with a dense "
    "lymphocytic infiltrate. Areas of comedo necrosis are present. There is no perineural "
    "invasion. Lymphovascular invasion is not identified. Microcalcifications are present "
    "within some lumina. The adjacent adipose tissue is infiltrated by single tumour cells."
)


class TinyClip:
    """Adapter with the ClipScorer methods around a random-weight tiny open_clip model."""

    name = "tiny-random"

    def __init__(self, config_dir: Path) -> None:
        import open_clip
        import torch

        config = {
            "embed_dim": 64,
            "vision_cfg": {
                "image_size": 64,
                "layers": 2,
                "width": 64,
                "patch_size": 32,
                "head_width": 32,
            },
            "text_cfg": {
                "context_length": 77,
                "vocab_size": 49408,
                "width": 64,
                "heads": 2,
                "layers": 2,
            },
        }
        path = config_dir / "pathgen_offline_tiny.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
        torch.manual_seed(0)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            "pathgen_offline_tiny", pretrained=None
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer("pathgen_offline_tiny")
        self.torch = torch

    def encode_images(self, images):
        with self.torch.no_grad():
            batch = self.torch.stack([self.preprocess(im) for im in images])
            feats = self.model.encode_image(batch)
        return self.torch.nn.functional.normalize(feats, dim=-1).numpy()

    def encode_texts(self, texts):
        with self.torch.no_grad():
            feats = self.model.encode_text(self.tokenizer(texts))
        return self.torch.nn.functional.normalize(feats, dim=-1).numpy()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text)) + 2


class BagOfWords:
    """Transparent scorer: a text is the normalised sum of fixed random word vectors."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
        return np.random.default_rng(seed).standard_normal(self.dim)

    def encode_texts(self, texts):
        rows = []
        for text in texts:
            words = [w.strip(".,;").lower() for w in text.split()]
            vec = sum(self._word(w) for w in words if w) + 1e-9
            rows.append(vec / np.linalg.norm(vec))
        return np.stack(rows).astype(np.float32)

    def encode_images(self, images):
        raise AssertionError("not used")

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> TinyClip:
    return TinyClip(tmp_path_factory.mktemp("clipcfg"))


@pytest.fixture(scope="module")
def tile():
    openslide = pytest.importorskip("openslide")
    with openslide.OpenSlide(str(SLIDE)) as slide:
        return slide.read_region((800, 1200), 0, (336, 336)).convert("RGB")


def test_adapters_satisfy_protocols(clip) -> None:
    assert isinstance(clip, ClipScorer)
    assert isinstance(make_offline_client(OFFLINE, clip), LLMClient)
    with pytest.raises(ProviderError, match="provider 'openai'"):
        make_offline_client(StageSettings(provider="openai"), clip)


async def test_offline_describe_on_a_real_tile_is_deterministic(clip, tile) -> None:
    client = make_offline_client(OFFLINE, clip)
    first = await run_describe(client, OFFLINE, DescribeInput(image=tile, report="IDC"))
    second = await run_describe(client, OFFLINE, DescribeInput(image=tile))
    assert first.ok, first.error
    assert first.text == second.text
    tissue = load_morphology_vocabulary().groups[0]
    assert split_sentences(first.text)[0] in {o.sentence for o in tissue.options}
    assert (first.provider, first.model, first.cost) == ("offline", "offline-clip:tiny-random", 0)
    assert first.output_tokens == clip.count_tokens(first.text)
    assert first.input_tokens > clip.count_tokens("Describe the H&E-stained tissue image")
    assert first.template_name == "describe_v1" and first.latency_s > 0


async def test_offline_revise_and_summarize_on_a_real_tile(clip, tile) -> None:
    client = make_offline_client(OFFLINE, clip)
    degraded = degrade_rules(LONG, seed=4)
    revised = [
        await run_revise(client, OFFLINE, degraded.text, image=tile, input_kind="degraded")
        for _ in range(2)
    ]
    assert revised[0].ok and revised[0].text == revised[1].text
    assert revised[0].provider == "offline" and revised[0].output_tokens > 0
    summaries = [await run_summarize(client, OFFLINE, LONG, clip.count_tokens) for _ in range(2)]
    summary = summaries[0]
    assert summary.ok and summary.text == summaries[1].text
    assert clip.count_tokens(LONG) > 77 >= clip.count_tokens(summary.text)
    assert summary.metrics == {
        "clip_tokens": clip.count_tokens(summary.text),
        "strict_retry": False,
    }
    assert set(split_sentences(summary.text)) <= set(split_sentences(LONG))
    assert len(split_sentences(summary.text)) >= 2


async def test_offline_degrade_llm_mode_matches_rules(clip) -> None:
    client = make_offline_client(OFFLINE, clip)
    settings = StageSettings(provider="offline", mode="llm")
    out = await run_degrade(client, settings, LONG, seed=9, n_edits=3)
    expected = degrade_rules(LONG, seed=9, n_edits=3)
    assert out.ok and out.text == expected.text
    assert out.edits == expected.edits
    assert out.template_name == "degrade_llm_v1"


async def test_offline_rejects_unknown_stage(clip) -> None:
    client = OfflineClient(clip)
    request = ChatRequest(messages=(Message("user", "hi"),), model="x", meta={"stage": "chat"})
    with pytest.raises(ProviderError, match="cannot run stage 'chat'"):
        await client.complete(request)
    describe = ChatRequest(messages=(Message("user", "hi"),), model="x", meta={"stage": "describe"})
    out = await run_revise(client, OFFLINE, "")  # empty description -> bad output, not a crash
    assert out.status == "failed"
    with pytest.raises(ProviderError, match="no image"):
        await client.complete(describe)


def test_describe_mentions_only_confident_groups() -> None:
    vocab = load_morphology_vocabulary()
    scorer = BagOfWords()
    options = OptionEmbeddings(scorer, vocab)
    groups = {g.name: i for i, g in enumerate(vocab.groups)}
    pick = {"tissue": 0, "architecture": 0}  # carcinoma, glandular
    image = sum(options.by_group[groups[g]][o] for g, o in pick.items())
    text, choices = describe_with_clip(image / np.linalg.norm(image), options)
    by_name = {c.group: c for c in choices}
    assert by_name["tissue"].option == "carcinoma" and by_name["tissue"].mentioned
    assert by_name["architecture"].option == "glandular" and by_name["architecture"].mentioned
    assert split_sentences(text)[:2] == [
        vocab.groups[0].options[0].sentence,
        vocab.groups[1].options[0].sentence,
    ]
    assert all(
        c.mentioned == (c.margin >= vocab.min_margin or c.group == "tissue")
        for c in choices
        if c.sentence
    )
    # An image equally close to two cellularity options is not called for that group.
    cell = options.by_group[groups["cellularity"]]
    tie = cell[0] + cell[2]
    _, tie_choices = describe_with_clip(tie / np.linalg.norm(tie), options)
    cellularity = next(c for c in tie_choices if c.group == "cellularity")
    assert cellularity.margin < vocab.min_margin and not cellularity.mentioned


def test_revise_swaps_contradicted_terms_and_drops_unsupported_sentences() -> None:
    scorer = BagOfWords()
    image = scorer.encode_texts(
        ["tumour poorly differentiated glands mitotic figures stroma desmoplastic necrosis"]
    )[0]
    text = (
        "The tumour is well differentiated. Mitotic figures are numerous in the tumour. "
        "The stroma is desmoplastic. Keratin pearls are formed by squamous cells."
    )
    revised, actions = revise_with_clip(image, text, scorer, load_contrast_vocabulary())
    assert revised.startswith("The tumour is poorly differentiated.")
    assert "Keratin pearls" not in revised
    assert "The stroma is desmoplastic." in revised
    assert {"action": "drop", "sentence_index": 3} in actions


def test_extractive_summary_falls_back_to_clauses_and_words() -> None:
    scorer = BagOfWords()
    one_long = "Alpha beta, gamma delta epsilon, " + " ".join(["zeta"] * 40) + "."
    short = summarize_extractive(one_long, scorer, max_tokens=10)
    assert 0 < scorer.count_tokens(short) <= 10
    assert summarize_extractive("", scorer, 77) == ""
    words = summarize_extractive(" ".join(["eta"] * 50) + ".", scorer, max_tokens=12)
    assert scorer.count_tokens(words) <= 12 and words.endswith(".")
