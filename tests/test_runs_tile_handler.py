"""A tiled slide is only reused when the manifest's mpp (which wins over the header) still
says what its tiles were cut at."""

from __future__ import annotations

from pathgen.runs.handlers.tile import _same_manifest_mpp
from pathgen.store.models import Slide


def test_a_changed_manifest_mpp_tiles_the_slide_again() -> None:
    from_header = Slide(path="a.svs", mpp=0.2525, mpp_source="openslide")
    from_manifest = Slide(path="b.svs", mpp=0.5, mpp_source="manifest")
    assert _same_manifest_mpp(from_header, None)
    assert _same_manifest_mpp(from_header, 0.2525)  # the manifest agrees: nothing to redo
    assert not _same_manifest_mpp(from_header, 0.5)  # the manifest overrides: cut again
    assert _same_manifest_mpp(from_manifest, 0.5)
    assert not _same_manifest_mpp(from_manifest, 0.46)
    assert not _same_manifest_mpp(from_manifest, None)  # the override was removed
