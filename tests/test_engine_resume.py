"""Cancellation leaves nothing at OUT; resume never recomputes finished tiles (counted)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from engine_util import CountingModel, texture, write_raster

from slimdiffsr import protocol
from slimdiffsr.engine.manifest import Manifest
from slimdiffsr.engine.run import Upscaler, upscale
from slimdiffsr.errors import CancelledError
from slimdiffsr.models.bicubic import BicubicSR

# 160 x 96 LR, tile 32 / overlap 16: 9 tile rows x 5 columns = 45 tiles. Output blocks are 256 HR
# rows (64 LR), so the first block row is written after 4 tile rows, the second after 8.
SETTINGS = {"tile": 32, "overlap": 16, "batch_size": 1}
TOTAL = 45


@pytest.fixture
def src(tmp_path):
    data = (texture(3, 160, 96, seed=21) * 255).astype(np.uint8)
    return write_raster(tmp_path / "in.tif", data)


def stop_after(n: int):
    state = {"done": 0}

    def progress(done: int, total: int, message: str) -> None:
        state["done"] = done

    return progress, (lambda: state["done"] >= n)


def leftovers(out):
    """The output and every temporary file of a run writing it (journal, partials), by kind."""
    found = []
    for p in sorted(out.parent.iterdir()):
        if p == out:
            found.append("output")
        elif p.name == protocol.journal_name(out.name):
            found.append("journal")
        elif p.name.startswith(protocol.temp_prefix(out.name)):
            found.append(p.name.rsplit(".", 2)[-2])  # partial, cog, final, lock ...
    return sorted(found)


def journal(out):
    return Manifest.read(out.with_name(protocol.journal_name(out.name)))


def test_cancel_leaves_no_file(src, tmp_path):
    out = tmp_path / "out.tif"
    progress, cancel = stop_after(25)
    with pytest.raises(CancelledError):
        upscale(src, out, model="bicubic", progress=progress, cancel=cancel, **SETTINGS)
    assert leftovers(out) == []
    assert list(tmp_path.iterdir()) == [src]


def test_resume_recomputes_only_unfinished_tiles(src, tmp_path):
    ref = upscale(src, tmp_path / "ref.tif", model="bicubic", qa=True, **SETTINGS)
    out = tmp_path / "out.tif"
    first = CountingModel(BicubicSR(4))
    progress, cancel = stop_after(25)
    with pytest.raises(CancelledError):
        Upscaler(first, **SETTINGS).run(
            src, out, qa=True, resume=True, progress=progress, cancel=cancel
        )
    assert first.tiles == 25
    assert not out.exists()  # a cancelled run leaves no file at OUT ...
    manifest = journal(out)
    assert manifest.rows_done == {0: 256}  # ... but keeps its finished rows for --resume
    assert len(manifest.tiles) == 15  # tile rows 0-2 end at LR row 64 or before

    second = CountingModel(BicubicSR(4))
    r = Upscaler(second, **SETTINGS).run(src, out, qa=True, resume=True)
    assert second.tiles == TOTAL - 15  # finished tiles were not recomputed
    assert r.summary["tiles_reused"] == 15 and r.summary["tiles_computed"] == 30
    assert leftovers(out) == ["output"]
    assert out.read_bytes() == ref.output.read_bytes()  # the same file, byte for byte
    with rasterio.open(ref.output) as a, rasterio.open(out) as b:
        np.testing.assert_array_equal(a.read(), b.read())  # identical to an uninterrupted run
    with rasterio.open(ref.qa_output) as a, rasterio.open(r.qa_output) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert r.summary["mean_consistency"] == pytest.approx(ref.summary["mean_consistency"])
    assert r.summary["tiles_flagged_fraction"] == ref.summary["tiles_flagged_fraction"]


def test_interrupt_keeps_partial_only_with_resume(src, tmp_path):
    out = tmp_path / "out.tif"

    def ctrl_c(done: int, total: int, message: str) -> None:
        if done >= 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale(src, out, model="bicubic", progress=ctrl_c, resume=True, **SETTINGS)
    assert leftovers(out) == ["journal", "partial"]
    # other settings: the partial is not reused (and the run says so)
    with pytest.warns(UserWarning, match="other settings"):
        r = upscale(src, out, model="bicubic", resume=True, tile=48, overlap=16)
    assert r.summary["tiles_reused"] == 0 and leftovers(out) == ["output"]
