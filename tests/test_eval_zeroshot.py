"""``pathgen zeroshot-eval`` on tissue vs background tiles cut from the CMU slide."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pathgen.cli.app import app
from pathgen.embed.tiny import write_tiny_clip
from pathgen.errors import ConfigError
from pathgen.eval.zeroshot import class_name, classification_metrics, load_labelled

SLIDE = Path(__file__).resolve().parents[2] / "shared/testdata/slides/CMU-1-Small-Region.svs"
PER_CLASS = 4


@pytest.fixture
def labelled_dir(tmp_path: Path) -> Path:
    """DIR/tissue/*.png and DIR/background_area/*.png: the darkest and brightest grid tiles."""
    if not SLIDE.is_file():
        pytest.skip(f"test slide missing: {SLIDE}")
    from pathgen.slides import open_slide, read_tile

    reader = open_slide(SLIDE)
    tiles = []
    for y in range(0, 2967 - 256, 256):
        for x in range(0, 2220 - 256, 256):
            img = read_tile(reader, x, y, 256, 64)
            tiles.append((float(np.asarray(img).mean()), x, y, img))
    tiles.sort(key=lambda t: t[:3])
    root = tmp_path / "labelled"
    for folder, chosen in (("tissue", tiles[:PER_CLASS]), ("background_area", tiles[-PER_CLASS:])):
        (root / folder).mkdir(parents=True)
        for _, x, y, img in chosen:
            img.save(root / folder / f"{x}_{y}.png")
    (root / "empty_class").mkdir()  # no images: not a class
    return root


def _check_consistent(result: dict, labels: list[int], classes: list[str]) -> None:
    cm = np.array(result["confusion_matrix"])
    assert cm.shape == (len(classes), len(classes))
    assert cm.sum() == len(labels)
    assert cm.sum(axis=1).tolist() == [labels.count(i) for i in range(len(classes))]
    pred = result["predictions"]
    for i in range(len(classes)):
        for j in range(len(classes)):
            n = sum(1 for t, p in zip(labels, pred, strict=True) if t == i and p == j)
            assert cm[i, j] == n
    assert result["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    recall = np.diag(cm) / cm.sum(axis=1)
    assert result["balanced_accuracy"] == pytest.approx(recall.mean())
    col = cm.sum(axis=0)
    precision = np.divide(np.diag(cm), col, out=np.zeros(len(classes)), where=col > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(len(classes)), where=denom > 0)
    assert result["macro_f1"] == pytest.approx(f1.mean())
    for i, name in enumerate(classes):
        assert result["per_class"][name]["f1"] == pytest.approx(f1[i])
        assert result["per_class"][name]["support"] == labels.count(i)


def test_zeroshot_eval_two_checkpoints(labelled_dir: Path, tmp_path: Path) -> None:
    cfg, base = write_tiny_clip(tmp_path / "base", seed=0)
    _, tuned = write_tiny_clip(tmp_path / "tuned", seed=1)
    out = tmp_path / "zs"
    result = CliRunner().invoke(
        app,
        [
            "zeroshot-eval", str(labelled_dir), "--model-name", "tiny_clip",
            "--config-json", str(cfg), "--pretrained", str(base),
            "--compare-pretrained", str(tuned), "--device", "cpu",
            "--template", "an H&E image of {}.", "--template", "a tile showing {}.",
            "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["background area", "tissue"]
    assert metrics["n_images"] == 2 * PER_CLASS and metrics["support"] == [PER_CLASS] * 2
    assert metrics["templates"] == ["an H&E image of {}.", "a tile showing {}."]
    assert set(metrics["checkpoints"]) == {"base", "compare"}
    runs = metrics["checkpoints"]
    assert runs["base"]["pretrained"] == str(base)
    assert runs["base"]["fingerprint"] != runs["compare"]["fingerprint"]
    for run in runs.values():
        _check_consistent(run, metrics["labels"], metrics["classes"])

    html = (out / "index.html").read_text(encoding="utf-8")
    images: list[str] = []

    class Page(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "img":
                images.append(dict(attrs)["src"] or "")

    Page().feed(html)
    assert len(images) == 2
    for src in images:
        assert (out / src).stat().st_size > 0
    assert "an H&amp;E image of {}." in html  # templates are escaped


def test_labelled_csv_and_bad_inputs(labelled_dir: Path, tmp_path: Path) -> None:
    table = tmp_path / "labels.csv"
    rows = sorted(labelled_dir.glob("*/*.png"))
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label"])
        for p in rows:
            w.writerow([p.relative_to(tmp_path), p.parent.name])
    data = load_labelled(table)
    assert data.classes == ["background area", "tissue"]
    assert len(data.paths) == len(rows) and all(p.is_file() for p in data.paths)
    assert class_name("lymph_node__metastasis") == "lymph node metastasis"
    with pytest.raises(ConfigError, match="two classes"):
        load_labelled(labelled_dir / "tissue")
    with pytest.raises(ConfigError, match="labelled"):
        load_labelled(tmp_path / "missing")


def test_classification_metrics_by_hand() -> None:
    # true [0,0,0,1,1,2], pred [0,0,1,1,2,2]: recalls 2/3, 1/2, 1; precisions 1, 1/2, 1/2.
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
