"""Dataset exports: WebDataset shards for CLIP training, revise pairs, caption tables.

Example::

    from pathgen.export import WebDatasetOptions, load_samples, write_webdataset
"""

from pathgen.export.captions import export_captions
from pathgen.export.pairs import FORMATS, RevisePair, load_pairs, write_pairs
from pathgen.export.samples import ExportSample, load_samples, sample_key
from pathgen.export.webdataset import (
    MANIFEST_FILE,
    SIZES_FILE,
    WebDatasetOptions,
    WebDatasetResult,
    write_webdataset,
)

__all__ = [
    "FORMATS",
    "MANIFEST_FILE",
    "SIZES_FILE",
    "ExportSample",
    "RevisePair",
    "WebDatasetOptions",
    "WebDatasetResult",
    "export_captions",
    "load_pairs",
    "load_samples",
    "sample_key",
    "write_pairs",
    "write_webdataset",
]
