"""The ONNX twin of the shipped model and the runtimes: same outputs as torch, card in metadata."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
import torch
from engine_util import texture, write_raster

from slimdiffsr.engine.run import Upscaler, upscale
from slimdiffsr.engine.runtime import (
    OnnxRunner,
    available_runtimes,
    onnx_twin,
    open_onnx,
    resolve_runtime,
)
from slimdiffsr.errors import ModelError
from slimdiffsr.models.card import CARD_KEY, file_sha256, read_card
from slimdiffsr.models.onnx_export import (
    BYTES_PER_PIXEL_KEY,
    SOURCE_HASH_KEY,
    export_onnx,
    read_onnx_card,
    read_onnx_metadata,
)
from slimdiffsr.models.registry import ZOO_DIR, load_model

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif("onnx" not in available_runtimes(), reason="onnxruntime not installed"),
]

SHIPPED = ZOO_DIR / "slimdiffsr-nano-x4.safetensors"


def lr_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Fixed imagery in model units (a real texture, not noise)."""
    b, c, h, w = shape
    x = np.stack([texture(c, h, w, seed=seed + i) for i in range(b)]) * 2 - 1
    return x.astype(np.float32)


def test_shipped_onnx_is_the_safetensors_model():
    """Same card, same weights (recorded hash), same output on a fixed input whose size is not
    a stride multiple (the graph's dynamic padding)."""
    onnx_path = onnx_twin(SHIPPED)
    assert onnx_path is not None and onnx_path.stat().st_size < 25 * 2**20
    meta = read_onnx_metadata(onnx_path)
    assert meta[SOURCE_HASH_KEY] == file_sha256(SHIPPED)
    assert read_onnx_card(onnx_path) == read_card(SHIPPED)
    assert "fp32" in meta[BYTES_PER_PIXEL_KEY]
    x = lr_input((1, 3, 30, 22))
    net = load_model("default")
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    runner = OnnxRunner(onnx_path, device="cpu", threads=1)
    out = runner(x)
    assert out.shape == ref.shape == (1, 3, 120, 88)
    err = np.abs(out - ref)
    assert err.max() < 1e-4  # 1 DN of uint8 is 2/255 = 7.8e-3 model units
    # the network does something beyond bicubic here, so the comparison is not vacuous
    assert (
        np.abs(
            ref
            - torch.nn.functional.interpolate(
                torch.from_numpy(x), scale_factor=4, mode="bicubic", align_corners=False
            ).numpy()
        ).mean()
        > 1e-3
    )


def test_engine_onnx_equals_torch_within_one_dn(tmp_path):
    data = (texture(3, 72, 56, seed=3) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", data)
    outs = {}
    for rt in ("onnx", "torch"):
        r = upscale(src, tmp_path / f"{rt}.tif", runtime=rt, device="cpu", tile_memory_mb=512)
        assert r.summary["runtime"] == rt
        with rasterio.open(r.output) as d:
            outs[rt] = d.read().astype(np.int32)
            assert d.tags()["SLIMDIFFSR_MODEL_HASH"] == file_sha256(SHIPPED)[:16]
    assert np.abs(outs["onnx"] - outs["torch"]).max() <= 1
    assert outs["onnx"].std() > 10  # real imagery came out


def test_runtime_choice():
    assert resolve_runtime("auto", "default", "cpu") == "onnx"
    assert resolve_runtime("auto", "bicubic", "cpu") == "torch"  # torch's own bicubic kernel
    assert resolve_runtime("torch", "default", "cpu") == "torch"
    module = load_model("bicubic")
    assert resolve_runtime("auto", module, "cpu") == "torch"
    with pytest.raises(ModelError, match="torch runtime"):
        resolve_runtime("onnx", module, "cpu")
    with pytest.raises(Exception, match="runtime must be one of"):
        resolve_runtime("tensorflow", "default", "cpu")
    up = Upscaler("default", runtime="auto", device="cpu")
    assert up.runtime == "onnx" and up.model_hash == file_sha256(SHIPPED)[:16]


def test_stale_onnx_twin_is_refused(tmp_path):
    """An .onnx beside weights it was not exported from must not run silently."""
    from slimdiffsr.models.student import SlimDiffSRStudent

    torch.manual_seed(0)
    other = SlimDiffSRStudent.from_preset("nano", scale=4)
    path = other.save_model(tmp_path / "other.safetensors")
    shutil.copy(onnx_twin(SHIPPED), tmp_path / "other.onnx")
    with pytest.raises(ModelError, match="exported from other weights"):
        open_onnx(str(path))
    with pytest.warns(UserWarning, match="exported from other weights"):
        up = Upscaler(str(path), runtime="auto", device="cpu")  # auto falls back to torch
    assert up.runtime == "torch" and up.model_hash == file_sha256(path)[:16]
    with pytest.raises(ModelError, match="no ONNX twin"):
        (tmp_path / "other.onnx").unlink()
        resolve_runtime("onnx", str(path), "cpu")


@pytest.mark.slow
def test_export_round_trip_and_onnx_only_model(tmp_path, monkeypatch):
    """Export a student file; the ONNX file alone is an installed model (card from metadata)."""
    from slimdiffsr.models.registry import list_models

    torch.manual_seed(1)
    net = load_model("default")
    with torch.no_grad():  # other weights than the shipped ones
        for p in net.vae.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    card = read_card(SHIPPED)
    card.name = "test-export-x4"
    src = net.save_model(tmp_path / "test-export-x4.safetensors", card=card)
    out = export_onnx(src, tmp_path / "models" / "test-export-x4.onnx", measure_memory=False)
    meta = read_onnx_metadata(out)
    assert meta[SOURCE_HASH_KEY] == file_sha256(src)
    assert read_onnx_card(out).name == "test-export-x4" and CARD_KEY in meta
    runner = OnnxRunner(out, device="cpu", threads=1)
    for shape in ((1, 3, 16, 16), (2, 3, 21, 34)):
        x = lr_input(shape, seed=5)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        assert np.abs(runner(x) - ref).max() < 1e-4
    monkeypatch.setenv("SLIMDIFFSR_MODELS", str(tmp_path / "models"))
    entry = next(e for e in list_models() if e.name == "test-export-x4")
    assert entry.path == out
    assert Upscaler("test-export-x4", runtime="onnx").model_hash == meta[SOURCE_HASH_KEY][:16]
