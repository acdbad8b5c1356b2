"""The demo: a synthetic slide, a tiny random-weight CLIP, the offline provider, SQLite.

It shows the machinery end to end on any machine, with no download and no network:
the captions are NOT meaningful (the CLIP weights are random).
"""

from __future__ import annotations

from pathlib import Path

DEMO_SLIDES = (
    # (file name, width, height, µm/px, seed): the same physical size at two resolutions
    ("synthetic-40x.tiff", 8000, 6000, 0.25, 1),
    ("synthetic-20x.tiff", 4000, 3000, 0.5, 2),
)
DEMO_REPORT = """FINAL DIAGNOSIS:
Invasive carcinoma with solid nests of pleomorphic tumour cells in a desmoplastic stroma.
Focal necrosis is present. Lymphocytic infiltrate at the tumour edge.
"""


def prepare_demo(directory: str | Path) -> Path:
    """Write slides, a tiny CLIP, a manifest and ``pathgen.toml`` into ``directory``.

    Idempotent: existing files are reused. Returns the config path.
    """
    from pathgen.embed.tiny import write_tiny_clip
    from pathgen.slides import write_synthetic_slide

    root = Path(directory).resolve()
    (root / "slides").mkdir(parents=True, exist_ok=True)
    for name, width, height, mpp, seed in DEMO_SLIDES:
        path = root / "slides" / name
        if not path.exists():
            write_synthetic_slide(path, width, height, mpp=mpp, seed=seed)
    report = root / "slides" / "report-1.txt"
    report.write_text(DEMO_REPORT, encoding="utf-8")
    config_json, checkpoint = root / "model" / "tiny_clip.json", root / "model" / "tiny_clip.pt"
    if not (config_json.exists() and checkpoint.exists()):
        config_json, checkpoint = write_tiny_clip(root / "model", seed=0)
    manifest = root / "slides.csv"
    rows = ["path,mpp,report,label,organ"]
    rows.append(f"slides/{DEMO_SLIDES[0][0]},,slides/report-1.txt,tumour,breast")
    rows.append(f"slides/{DEMO_SLIDES[1][0]},,,normal,breast")
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = root / "pathgen.toml"
    config.write_text(
        f"""# pathgen demo: synthetic slides, a tiny RANDOM-weight CLIP, the offline provider.
[database]
url = "sqlite+aiosqlite:///{root / "pathgen.db"}"

[run]
name = "demo"
manifest = "{manifest}"
data_dir = "{root / "data"}"

[tiling]
mpp = 0.5
tile_size = 336
preview_dir = "{root / "previews"}"

[model]
name = "tiny_clip"
config_json = "{config_json}"
pretrained = "{checkpoint}"
batch_size = 32

[selection]
top_k = 8
max_diverse = 16
duplicate_threshold = 0.999

[captioning]
degrade_copies = 1

# Instruction-tuning / VQA items from each final description (template-made offline).
[captioning.instruct]
enabled = true
""",
        encoding="utf-8",
    )
    return config
