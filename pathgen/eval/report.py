"""Write an evaluation's ``metrics.json``, PNG plots and ``index.html`` (Jinja2, autoescaped).

Templates live in ``pathgen/eval/templates/`` and are loaded by name. Caption text is
untrusted: autoescaping is always on.

Example::

    write_eval_report(metrics, "report/")      # report/index.html, metrics.json, plots/
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from pathgen.eval import plots

_SLUG = re.compile(r"[^A-Za-z0-9]+")


def slug(text: str, limit: int = 48) -> str:
    """A short file-name-safe form of ``text`` (long ones end in a hash, so they stay unique)."""
    clean = _SLUG.sub("-", text).strip("-").lower() or "x"
    if len(clean) <= limit:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{clean[:limit].rstrip('-')}-{digest}"


def _environment():  # noqa: ANN202 - jinja2.Environment
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("pathgen.eval", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
    )
    env.filters["num"] = _fmt
    return env


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _clean(value: Any) -> Any:
    """Replace NaN / inf by None so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_metrics(metrics: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``metrics.json`` (standard JSON, no NaN) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    path.write_text(json.dumps(_clean(metrics), indent=2, allow_nan=False), encoding="utf-8")
    return path


def write_eval_report(metrics: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write the ``pathgen eval`` report; returns the path of ``index.html``."""
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, out)
    figures: dict[str, dict[str, str]] = {}
    for name, group in metrics["groups"].items():
        dist = group["distributions"]
        key = slug(name)
        plots.histogram(
            dist["clip_score"], "CLIP image–caption cosine", name, plot_dir / f"clip_{key}.png"
        )
        plots.histogram(
            dist["words"], "caption length (words)", name, plot_dir / f"words_{key}.png"
        )
        plots.histogram(
            dist["clip_tokens"],
            "caption length (CLIP tokens)",
            name,
            plot_dir / f"tokens_{key}.png",
        )
        figures[name] = {
            "clip": f"plots/clip_{key}.png",
            "words": f"plots/words_{key}.png",
            "tokens": f"plots/tokens_{key}.png",
        }
    recovery = metrics["recovery"]
    series = {
        model: {op: v["rate"] for op, v in bucket["by_op"].items()}
        for model, bucket in recovery["by_model"].items()
    }
    notes = {
        model: {op: f"{v['undone']}/{v['made']}" for op, v in bucket["by_op"].items()}
        for model, bucket in recovery["by_model"].items()
    }
    plots.grouped_bars(
        series,
        "share of edits undone",
        "reviser recovery by edit type (undone/made)",
        plot_dir / "recovery.png",
        notes=notes,
    )
    plots.histogram(
        metrics["review"]["distributions"]["edit_distance"],
        "normalised word edit distance",
        "human edits",
        plot_dir / "edit_distance.png",
    )
    html = _environment().get_template("eval_report.html.jinja2").render(m=metrics, figures=figures)
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index


def write_zeroshot_report(metrics: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write the checkpoint comparison report; returns the path of ``index.html``.

    ``metrics`` holds zero-shot results (``checkpoints``, from ``pathgen zeroshot-eval``),
    a ``retrieval`` section (:mod:`pathgen.eval.retrieval`), or both.
    """
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for label, result in metrics.get("checkpoints", {}).items():
        name = f"plots/confusion_{slug(label)}.png"
        plots.confusion_matrix_plot(
            result["confusion_matrix"],
            metrics["classes"],
            f"{label}: {result['pretrained']}",
            out / name,
        )
        figures[label] = name
    write_metrics(metrics, out)
    html = (
        _environment()
        .get_template("zeroshot_report.html.jinja2")
        .render(m=metrics, figures=figures)
    )
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
