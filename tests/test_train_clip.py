"""``pathgen train-clip``: the tiny CLIP learns from pathgen's own pairs, measured on held-out
slides against the base model's own figure; LoRA trains adapters only; local-dir folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.errors import ConfigError, TrainError
from pathgen.eval.retrieval import pair_recall
from pathgen.settings import load_settings
from pathgen.train.options import TrainOptions, pick_device, precision_for
from pathgen.train.split import choose_val_slides
from tests.train_helpers import CLASSES, ClassRun, write_class_run

TRAIN_ARGS = ["--batch-size", "16", "--lr", "1e-3", "--val-fraction", "0.5", "--device", "cpu"]


@pytest.fixture(scope="module")
def class_run(tmp_path_factory: pytest.TempPathFactory) -> ClassRun:
    return write_class_run(tmp_path_factory.mktemp("classes"))


@pytest.fixture(scope="module")
def trained(class_run: ClassRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full fine-tune of 2 epochs from the run (exported by train-clip itself)."""
    out = tmp_path_factory.mktemp("trained")
    result = CliRunner().invoke(
        app,
        ["-c", str(class_run.config), "train-clip", class_run.run_id, "--out", str(out)]
        + ["--epochs", "2", *TRAIN_ARGS],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "held-out retrieval" in result.output and "[model]" in result.output
    return out


# ----------------------------------------------------------------------------- pure logic


def test_device_and_precision_rules() -> None:
    assert pick_device("auto", cuda_available=True) == "cuda"
    assert pick_device("auto", cuda_available=False) == "cpu"
    assert pick_device("cpu", cuda_available=True) == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        pick_device("cuda", cuda_available=False)
    assert precision_for("cuda", "auto", bf16_supported=True) == "amp_bf16"
    assert precision_for("cuda", "auto", bf16_supported=False) == "amp"
    assert precision_for("cpu", "auto", bf16_supported=False) == "fp32"
    assert precision_for("cpu", "bf16", bf16_supported=False) == "amp_bf16"  # CPU autocast
    assert precision_for("cuda", "fp16", bf16_supported=True) == "amp"
    with pytest.raises(ConfigError, match="needs a GPU"):
        precision_for("cpu", "fp16", bf16_supported=False)
    with pytest.raises(ConfigError, match="no bf16 support"):
        precision_for("cuda", "bf16", bf16_supported=False)
    with pytest.raises(ConfigError, match="--tune"):
        TrainOptions(tune="lora")


def test_split_holds_out_slides_of_every_label() -> None:
    labels = {f"{c}-{i}": c for c in ("a", "b", "c") for i in range(4)} | {"lone": "d"}
    train, val = choose_val_slides(labels, 0.25, seed=1)
    assert not set(train) & set(val) and set(train) | set(val) == set(labels)
    assert sorted(s.split("-")[0] for s in val) == ["a", "b", "c"]  # one per label, 'd' trains
    assert choose_val_slides(labels, 0.25, seed=1) == (train, val)
    with pytest.raises(TrainError, match="at least two slides"):
        choose_val_slides({"only": "a"}, 0.5, seed=0)


def test_pair_recall_counts_identical_captions_as_one_text() -> None:
    # two images share caption "a"; image 2 is closest to "b", its own caption is "c"
    img = np.eye(3, dtype=np.float32)
    txt = np.array([[1, 0, 0], [1, 0, 0], [0, 0.2, 0.98]], dtype=np.float32)
    captions = ["a", "a", "c"]
    rec = pair_recall(img, txt, captions, ks=(1, 2))
    # image 0 -> "a" (hit); image 1 scores 0 with "a" and 0.2 with "c": miss at 1, hit at 2
    assert rec["image_to_text"] == {"r@1": pytest.approx(2 / 3), "r@2": 1.0}
    # "a" finds image 0 first (a positive), "c" finds image 2 first
    assert rec["text_to_image"] == {"r@1": 1.0, "r@2": 1.0}


# ----------------------------------------------------------------------------- training


def test_training_beats_the_base_model_on_held_out_slides(
    class_run: ClassRun, trained: Path
) -> None:
    import open_clip
    import safetensors.torch

    from pathgen.embed import load_clip

    summary = json.loads((trained / "summary.json").read_text())
    split = summary["split"]
    assert not set(split["train_slides"]) & set(split["val_slides"])
    assert {Path(s).name.split("-")[0] for s in split["val_slides"]} == set(CLASSES)
    assert split["train_samples"] + split["val_samples"] == class_run.tiles
    import pyarrow.parquet as pq

    val_rows = pq.read_table(trained / "data" / "val" / "manifest.parquet").to_pylist()
    assert {r["slide"] for r in val_rows} == set(split["val_slides"])
    assert len(val_rows) == split["val_samples"]

    ret = summary["retrieval"]["checkpoints"]
    base, after = ret["base"]["image_to_text"]["r@1"], ret["trained"]["image_to_text"]["r@1"]
    print(f"held-out image->text R@1: base {base:.3f}, trained {after:.3f}")
    assert after >= base + 0.3, (base, after)
    assert ret["trained"]["text_to_image"]["r@1"] > ret["base"]["text_to_image"]["r@1"]
    assert summary["device"] == "cpu" and summary["precision"] == "fp32"
    assert summary["parameters"]["trainable"] == summary["parameters"]["total"]
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert all(e["train_loss"] > 0 and "clip_val_loss" in e["val"] for e in summary["epochs"])
    html = (trained / "eval" / "index.html").read_text(encoding="utf-8")
    assert "retrieval-table" in html and "base" in html and "trained" in html

    # the weights load through the normal [model] path and as an open_clip local-dir: folder
    settings = load_settings(class_run.config).model
    weights = trained / "model" / "open_clip_model.safetensors"
    clip = load_clip(settings.model_copy(update={"pretrained": str(weights)}))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{trained / 'model'}")
    saved = safetensors.torch.load_file(str(weights))
    for name, tensor in model.state_dict().items():
        assert np.array_equal(tensor.numpy(), saved[name].numpy()), name
        assert np.array_equal(clip.model.state_dict()[name].numpy(), saved[name].numpy())
    assert clip.fingerprint != load_clip(settings).fingerprint


def test_lora_trains_adapters_only_resumes_and_merges(class_run: ClassRun, trained: Path) -> None:
    import safetensors.torch
    import torch

    from pathgen.embed import load_clip
    from pathgen.train import finetune

    base = load_settings(class_run.config).model
    out = trained.parent / "lora"
    opts = TrainOptions(
        tune="lora-image",
        epochs=2,
        batch_size=32,
        lr=1e-3,
        val_fraction=0.5,
        device="cpu",
        precision="bf16",  # the GPU's autocast path, run on the CPU
    )

    def stop_after_first(summary: dict) -> None:
        raise KeyboardInterrupt

    source = trained / "data" / "export"
    with pytest.raises(KeyboardInterrupt):
        finetune(source, base, out, opts, on_epoch=stop_after_first)
    summary = finetune(source, base, out, opts, report_to="tensorboard")
    assert summary["resumed_after_epoch"] == 1
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert summary["precision"] == "amp_bf16" and summary["device"] == "cpu"
    # open_clip_train's own TensorBoard logging (--report-to tensorboard) wrote its events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "logs" / "pathgen" / "tensorboard")).Reload()
    assert {"train/loss", "val/clip_val_loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val/clip_val_loss")] == [2]  # the resumed epoch

    adapter = safetensors.torch.load_file(str(out / "lora_adapter" / "adapter_model.safetensors"))
    adapter_params = sum(t.numel() for t in adapter.values())
    trainable, total = summary["parameters"]["trainable"], summary["parameters"]["total"]
    print(f"LoRA trains {trainable} of {total} parameters ({adapter_params} in the adapter)")
    assert trainable == adapter_params > 0 and trainable < total / 20
    assert all("lora_" in n and ".visual." in n for n in summary["trainable_names"])

    base_sd = load_clip(base).model.state_dict()
    merged = load_clip(base.model_copy(update={"pretrained": summary["weights"]}))
    merged_sd = merged.model.state_dict()
    assert set(merged_sd) == set(base_sd)
    changed = {n for n in base_sd if not torch.equal(base_sd[n], merged_sd[n])}
    assert changed and all(n.startswith("visual.transformer.resblocks.") for n in changed)

    # A different training into the same folder is refused, not mixed in.
    with pytest.raises(TrainError, match="other options"):
        finetune(source, base, out, TrainOptions(**{**opts.__dict__, "lora_r": 4}))


def test_open_clip_train_trains_an_exported_local_dir_model(
    class_run: ClassRun, trained: Path, tmp_path: Path
) -> None:
    """The README's open_clip_train command, for a model with its own architecture config."""
    folder = tmp_path / "tiny-local"
    result = CliRunner().invoke(
        app,
        ["-c", str(class_run.config), "export", "open-clip-model", "--out", str(folder)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert (folder / "open_clip_config.json").is_file()
    sizes = json.loads((trained / "data" / "train" / "sizes.json").read_text())
    shards = str(trained / "data" / "train" / f"{{00000..{len(sizes) - 1:05d}}}.tar")
    logs = tmp_path / "logs"
    cmd = [
        sys.executable,
        "-m",
        "open_clip_train.main",
        "--model",
        f"local-dir:{folder}",
        "--train-data",
        shards,
        "--dataset-type",
        "webdataset",
        "--train-num-samples",
        "2",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--logs",
        str(logs),
        "--name",
        "one-step",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (logs / "one-step" / "out.log").read_text()
    assert "Train Epoch: 0 [2/2 (100%)]" in log
    assert (logs / "one-step" / "checkpoints" / "epoch_1.pt").is_file()


def test_zeroshot_and_retrieval_of_base_and_trained_in_one_report(
    class_run: ClassRun, trained: Path, tmp_path: Path
) -> None:
    """`pathgen zeroshot-eval` on the held-out tiles (labelled by their slide's manifest label)
    and the retrieval evaluation on the same pairs, base and trained side by side."""
    import pyarrow.parquet as pq

    from pathgen.eval.retrieval import iter_pairs

    val = trained / "data" / "val"
    label_of = {r["key"]: r["label"] for r in pq.read_table(val / "manifest.parquet").to_pylist()}
    labelled = tmp_path / "labelled"  # class folders named by the class caption, prompt "{}"
    for key, image, _ in iter_pairs(val):
        folder = labelled / CLASSES[label_of[key]][1].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{key}.png")
    model = load_settings(class_run.config).model
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "zeroshot-eval",
            str(labelled),
            "--pairs",
            str(val),
            "--out",
            str(out),
            "--model-name",
            model.name,
            "--config-json",
            str(model.config_json),
            "--pretrained",
            str(model.pretrained),
            "--compare-pretrained",
            str(trained / "model" / "open_clip_model.safetensors"),
            "--device",
            "cpu",
        ],  # fmt: skip
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["checkpoints"]) == set(metrics["retrieval"]["checkpoints"])
    summary = json.loads((trained / "summary.json").read_text())["retrieval"]["checkpoints"]
    for mine, theirs in (("base", "base"), ("compare", "trained")):
        got = metrics["retrieval"]["checkpoints"][mine]
        assert got["image_to_text"] == pytest.approx(summary[theirs]["image_to_text"])
        assert got["fingerprint"] == summary[theirs]["fingerprint"]
    zs = metrics["checkpoints"]
    print(
        f"zero-shot accuracy: base {zs['base']['accuracy']:.3f}, trained "
        f"{zs['compare']['accuracy']:.3f}"
    )
    assert zs["compare"]["accuracy"] > zs["base"]["accuracy"]
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "summary-table" in html and "retrieval-table" in html
