"""The shipped models: both load, run through the engine on a fixed crop and beat bicubic there
(fidelity: Y-PSNR; perceptual: LPIPS, while staying faithful to the input), and the detail
control blends them. A broken or swapped model file fails these tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slimdiffsr.models.registry import DEFAULT_MODEL, PERCEPTUAL_MODEL, ZOO_DIR

DEMO = (
    Path(__file__).resolve().parents[1] / "core" / "slimdiffsr" / "demo" / "neon_teak_043_crop.tif"
)
MAX_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def crop(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    """HR (3, 128, 128) in [0, 1] from the demo plot (NEON TEAK: a validation site, never
    trained on) and its LR GeoTIFF, degraded with the 'rs' preset, seed 0, rounded to uint8."""
    import rasterio
    import torch
    from affine import Affine

    from slimdiffsr.data.degradation import DegradationConfig, degrade

    with rasterio.open(DEMO) as src:
        hr = src.read().astype(np.float32) / 255.0
        profile = src.profile
        transform = src.transform
    lr = degrade(
        torch.from_numpy(hr)[None], 4, DegradationConfig.rs(), torch.Generator().manual_seed(0)
    )
    lr8 = np.clip(np.rint(lr[0].numpy() * 255), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("zoo") / "lr.tif"
    profile.update(width=32, height=32, nodata=None, transform=transform @ Affine.scale(4))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(lr8)
    return hr, path


def _engine(lr_path: Path, model, tmp: Path, name: str) -> np.ndarray:
    import rasterio

    from slimdiffsr.engine.run import upscale

    out = tmp / f"{name}.tif"
    upscale(lr_path, out, model=model, device="cpu", overwrite=True)
    with rasterio.open(out) as src:
        assert (src.width, src.height) == (128, 128)
        return src.read().astype(np.float32) / 255.0


def _psnr(sr: np.ndarray, hr: np.ndarray) -> float:
    from slimdiffsr.metrics.psnr_ssim import psnr

    return psnr(sr, hr, crop=4, test_y_channel=True)


def _consistency(sr: np.ndarray, lr_path: Path) -> float:
    import rasterio

    from slimdiffsr.metrics.rs import consistency_l1

    with rasterio.open(lr_path) as src:
        lr = src.read().astype(np.float32) / 255.0
    return consistency_l1(sr, lr, 4, 255.0)


def test_both_models_are_listed_small_and_documented() -> None:
    from slimdiffsr.models.card import read_card
    from slimdiffsr.models.registry import list_models

    names = [e.name for e in list_models()]
    for name in (DEFAULT_MODEL, PERCEPTUAL_MODEL):
        assert name in names
        f = ZOO_DIR / f"{name}.safetensors"
        assert f.stat().st_size < MAX_BYTES
        card = read_card(f)
        assert card.training.get("steps") and card.training.get("data")
        assert "landsat8" in " ".join(card.training["data"]), "landsat8 licence missing"
        assert card.metrics.get("by_sensor"), "validation by sensor missing"
        md = f.with_suffix(".md").read_text()
        assert "## Validation" in md and "Landsat-8" in md


@pytest.mark.slow  # three engine runs; ~15 s on a free core
def test_fidelity_model_beats_bicubic_psnr_through_the_engine(crop, tmp_path: Path) -> None:
    hr, lr_path = crop
    bic = _engine(lr_path, "bicubic", tmp_path, "bicubic")
    sr = _engine(lr_path, DEFAULT_MODEL, tmp_path, "fidelity")
    gain = _psnr(sr, hr) - _psnr(bic, hr)
    # measured +0.85 dB (the perceptual model: -0.45)
    assert gain > 0.4, f"fidelity model only {gain:+.2f} dB over bicubic on the fixed crop"


@pytest.mark.slow  # three engine runs; ~15 s on a free core
def test_perceptual_model_beats_bicubic_lpips_and_stays_faithful(crop, tmp_path: Path) -> None:
    from slimdiffsr.weights import WEIGHT_FILES, weights_dir

    hr, lr_path = crop
    bic = _engine(lr_path, "bicubic", tmp_path, "bicubic")
    sr = _engine(lr_path, PERCEPTUAL_MODEL, tmp_path, "perceptual")
    # faithful: its own downsampling reproduces the input, and Y-PSNR stays near bicubic
    assert _consistency(sr, lr_path) <= 2.5
    # (measured on this crop: -0.45 dB; the 0.5 dB bound is on the validation mean)
    assert _psnr(sr, hr) > _psnr(bic, hr) - 1.0
    assert np.abs(sr - bic).mean() * 255 > 0.5, "no more detail than bicubic"
    if not (weights_dir() / "lpips_alex.safetensors").is_file():
        pytest.skip(
            f"LPIPS weights not provisioned ({WEIGHT_FILES['lpips_alex.safetensors'].name})"
        )
    from slimdiffsr.metrics.iqa import build_metric

    lpips = build_metric("lpips")
    gain = lpips(sr, hr) - lpips(bic, hr)
    # measured -0.32 (the fidelity model: -0.11), so a swapped or broken file fails
    assert gain < -0.2, f"perceptual model LPIPS only {gain:+.3f} vs bicubic on the fixed crop"


@pytest.mark.slow  # three engine runs; ~15 s on a free core
def test_detail_blends_the_two_models(crop, tmp_path: Path) -> None:
    import torch

    from slimdiffsr.models.registry import load_model

    _, lr_path = crop
    import rasterio

    with rasterio.open(lr_path) as src:
        x = torch.from_numpy(src.read().astype(np.float32) / 127.5 - 1.0)[None]
    with torch.no_grad():
        f = load_model(DEFAULT_MODEL)(x)
        p = load_model(PERCEPTUAL_MODEL)(x)
        assert torch.equal(load_model("default", detail=0.0)(x), f)
        assert torch.allclose(load_model("default", detail=1.0)(x), p, atol=1e-5)
        mid = load_model("default", detail=0.5)(x)
    d_fp = float((f - p).abs().mean())
    assert d_fp > 1e-3
    assert float((mid - f).abs().mean()) < d_fp and float((mid - p).abs().mean()) < d_fp
    with pytest.raises(Exception, match="between 0 and 1"):
        load_model("default", detail=1.5)
    with pytest.raises(Exception, match="does not apply"):
        load_model("bicubic", detail=0.5)
    # through the engine, with the module built by the registry
    sr = _engine(lr_path, load_model("default", detail=0.5), tmp_path, "mid")
    assert _consistency(sr, lr_path) < 5.0
