"""Hold out whole slides: split an exported shard folder into ``train/`` and ``val/`` shards.

The split reads the export's ``manifest.parquet`` (one row per sample, with its slide and
the slide's manifest label), picks ``val_fraction`` of the slides of each label for
validation (seeded, so the same folder and options give the same split) and copies the
samples into new shards, so no slide has tiles on both sides. Each side gets its own
``sizes.json`` and ``manifest.parquet``; ``split.json`` lists the slides of each side. An
existing split made from the same manifest with the same options is reused.

Example::

    split = split_by_slide(Path("export"), Path("out/data"), val_fraction=0.2, seed=0)
    split.train_dir, split.val_dir, split.val_slides
"""

from __future__ import annotations

import hashlib
import json
import random
import tarfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pathgen.errors import TrainError
from pathgen.export.shards import file_sha256, write_atomic, write_shard
from pathgen.export.webdataset import MANIFEST_FILE, SIZES_FILE

SPLIT_FILE = "split.json"
SHARD_SIZE = 1000


@dataclass(frozen=True)
class Split:
    """Where the two sides are and which slides each holds."""

    train_dir: Path
    val_dir: Path
    train_slides: list[str]
    val_slides: list[str]
    train_samples: int
    val_samples: int

    def shards(self, side: str) -> str:
        """The brace pattern open_clip_train reads for ``side`` (``train`` or ``val``)."""
        folder = self.train_dir if side == "train" else self.val_dir
        names = sorted(json.loads((folder / SIZES_FILE).read_text(encoding="utf-8")))
        return str(folder / f"{{{names[0][:-4]}..{names[-1][:-4]}}}.tar")


def _read_manifest(source: Path) -> list[dict]:
    import pyarrow.parquet as pq

    path = source / MANIFEST_FILE
    if not path.is_file():
        raise TrainError(
            f"no {MANIFEST_FILE}: not a `pathgen export webdataset` folder", out_dir=str(source)
        )
    return pq.read_table(path).to_pylist()


def choose_val_slides(
    labels: dict[str, str | None], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """``(train slides, val slides)``: per label, ``val_fraction`` of its slides (at least one
    when the label has two or more), and at least one slide on each side overall."""
    if len(labels) < 2:
        raise TrainError(
            f"a held-out split needs at least two slides, the export has {len(labels)}; "
            "export a run with more slides"
        )
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    for slide, label in sorted(labels.items()):
        by_label[label or ""].append(slide)
    val: list[str] = []
    for label in sorted(by_label):
        slides = by_label[label]
        rng.shuffle(slides)
        n = round(len(slides) * val_fraction)
        if len(slides) >= 2:
            n = min(max(n, 1), len(slides) - 1)
        val += slides[:n]
    if not val:
        val = [rng.choice(sorted(labels))]
    if len(val) == len(labels):
        val = val[:-1]
    train = sorted(set(labels) - set(val))
    return train, sorted(val)


def _samples(source: Path, shard_names: list[str]) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """``(key, members)`` for each sample of the shards, in shard order."""
    for name in shard_names:
        with tarfile.open(source / name) as tar:
            key, members = None, []
            for member in tar:
                if not member.isfile():
                    continue
                this = member.name.split(".", 1)[0]
                if key is not None and this != key:
                    yield key, members
                    members = []
                key = this
                data = tar.extractfile(member)
                members.append((member.name, data.read() if data else b""))
            if key is not None:
                yield key, members


def _write_side(folder: Path, samples: list[list[tuple[str, bytes]]], rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.tar"):
        old.unlink()
    sizes = {}
    for start in range(0, len(samples), SHARD_SIZE):
        name = f"{start // SHARD_SIZE:05d}.tar"
        chunk = samples[start : start + SHARD_SIZE]
        write_shard(folder, name, [m for sample in chunk for m in sample])
        sizes[name] = len(chunk)
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    write_atomic(folder / MANIFEST_FILE, buf.getvalue().to_pybytes())
    write_atomic(folder / SIZES_FILE, json.dumps(sizes, indent=1).encode())


def split_by_slide(source: Path, out_dir: Path, *, val_fraction: float, seed: int) -> Split:
    """Split the export in ``source`` into ``out_dir/train`` and ``out_dir/val`` by slide."""
    rows = _read_manifest(source)
    if not rows:
        raise TrainError("the export has no samples", out_dir=str(source))
    labels = {r["slide"]: r.get("label") for r in rows}
    plan = hashlib.sha256(
        f"{file_sha256(source / MANIFEST_FILE)}|{val_fraction}|{seed}".encode()
    ).hexdigest()
    train_dir, val_dir = out_dir / "train", out_dir / "val"
    try:
        saved = json.loads((out_dir / SPLIT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    if saved.get("plan") == plan:
        return Split(
            train_dir,
            val_dir,
            saved["train_slides"],
            saved["val_slides"],
            saved["train_samples"],
            saved["val_samples"],
        )
    train_slides, val_slides = choose_val_slides(labels, val_fraction, seed)
    held_out = set(val_slides)
    slide_of = {r["key"]: r["slide"] for r in rows}
    shard_names = sorted({r["shard"] for r in rows})
    sides: dict[bool, list[list[tuple[str, bytes]]]] = {True: [], False: []}
    for key, members in _samples(source, shard_names):
        if key not in slide_of:
            raise TrainError(f"shard sample {key} is not in {MANIFEST_FILE}", out_dir=str(source))
        sides[slide_of[key] in held_out].append(members)
    _write_side(train_dir, sides[False], [r for r in rows if r["slide"] not in held_out])
    _write_side(val_dir, sides[True], [r for r in rows if r["slide"] in held_out])
    split = Split(train_dir, val_dir, train_slides, val_slides, len(sides[False]), len(sides[True]))
    record = {
        "plan": plan,
        "source": str(source),
        "val_fraction": val_fraction,
        "seed": seed,
        "train_slides": train_slides,
        "val_slides": val_slides,
        "train_samples": split.train_samples,
        "val_samples": split.val_samples,
    }
    write_atomic(out_dir / SPLIT_FILE, json.dumps(record, indent=1).encode())
    return split
