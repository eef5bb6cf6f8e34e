"""PSNR/SSIM: BasicSR-style contract tests and pyiqa's published calibration values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from slimdiffsr.metrics.psnr_ssim import crop_border, psnr, ssim, to_y

# pyiqa's published values for its five calibration pairs (IQA-PyTorch,
# ResultsCalibra/calibration_summary.csv): the original implementation's row and pyiqa's "(ours)".
NAMES = ("I03", "I04", "I06", "I08", "I19")
CALIBRATION: dict[str, dict[str, tuple[float, ...]]] = {
    "psnr": {
        "official": (21.11, 20.99, 27.01, 23.3, 21.62),
        "pyiqa": (21.1136, 20.9872, 27.0139, 23.3002, 21.6186),
    },
    "ssim": {
        "official": (0.6993, 0.9978, 0.9989, 0.9669, 0.6519),
        "pyiqa": (0.6997, 0.9978, 0.9989, 0.9671, 0.6522),
    },
    "lpips": {
        "official": (0.7237, 0.2572, 0.0508, 0.052, 0.4253),
        "pyiqa": (0.7237, 0.2572, 0.0508, 0.0521, 0.4253),
    },
    "dists": {
        "official": (0.4742, 0.1424, 0.0683, 0.0287, 0.3123),
        "pyiqa": (0.4742, 0.1424, 0.0682, 0.0287, 0.3123),
    },
    "niqe": {
        "official": (15.7536, 3.6549, 3.2355, 3.184, 8.6352),
        "pyiqa": (15.6538, 3.6549, 3.2342, 3.1921, 9.0722),
    },
}


def calibration_dir() -> Path:
    spec = importlib.util.find_spec("pyiqa")
    if spec is None or spec.origin is None:
        pytest.skip("pyiqa is not installed: its wheel ships the ResultsCalibra images")
    d = Path(spec.origin).resolve().parent.parent / "ResultsCalibra"
    if not (d / "dist_dir").is_dir():
        pytest.skip(f"pyiqa's calibration images not found at {d}")
    return d


def load_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """The five (distorted, reference) pairs as (3, H, W) float64 in [0, 1]."""
    from PIL import Image

    d = calibration_dir()

    def read(p: Path) -> np.ndarray:
        return np.asarray(Image.open(p).convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255

    return [(read(d / "dist_dir" / f"{n}.bmp"), read(d / "ref_dir" / f"{n}.bmp")) for n in NAMES]


def pyiqa_relative_error(ours: np.ndarray, published: np.ndarray) -> float:
    """pyiqa's own acceptance criterion (tests/test_metrics.py): absolute differences below 0.01
    are ignored, the rest are averaged as relative errors; a metric passes below 0.01 (1 %)."""
    diff = np.abs(np.abs(published) - np.abs(ours))
    diff = diff * (diff > 0.01)
    return float((diff / (np.abs(published) + 1e-8)).mean())


# ------------------------------------------------------------------------------------------------
# Contract (BasicSR tests/test_metrics/test_psnr_ssim.py)
# ------------------------------------------------------------------------------------------------
def test_equal_images_give_inf_psnr_and_unit_ssim() -> None:
    x = np.random.default_rng(0).random((3, 32, 32))
    assert psnr(x, x) == float("inf")
    assert ssim(x, x) == pytest.approx(1.0)


@pytest.mark.parametrize("fn", [psnr, ssim])
def test_shape_mismatch_raises(fn) -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        fn(np.zeros((3, 32, 32)), np.zeros((3, 32, 31)))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        fn(np.zeros((1, 3, 32, 32)), np.zeros((1, 3, 32, 32)))


def test_psnr_known_value_and_data_range() -> None:
    a = np.zeros((1, 16, 16))
    b = np.full((1, 16, 16), 0.1)
    assert psnr(a, b, test_y_channel=False) == pytest.approx(20.0)
    assert psnr(a * 255, b * 255, test_y_channel=False, data_range=255) == pytest.approx(20.0)


def test_y_is_bt601_studio_swing() -> None:
    white, black = np.ones((3, 2, 2)), np.zeros((3, 2, 2))
    assert to_y(white)[0, 0, 0] == pytest.approx(235 / 255)
    assert to_y(black)[0, 0, 0] == pytest.approx(16 / 255)
    assert to_y(white, color_space="yiq")[0, 0, 0] == pytest.approx(1.0)
    # RGBN: luma of the first three bands
    rgbn = np.concatenate([white, np.zeros((1, 2, 2))])
    assert to_y(rgbn)[0, 0, 0] == pytest.approx(235 / 255)
    with pytest.raises(ValueError, match="1 or >= 3 bands"):
        to_y(np.zeros((2, 4, 4)))


def test_border_crop_ignores_edges() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((3, 40, 40))
    b = a.copy()
    b[:, :4] = 0  # damage only the top 4 rows
    assert psnr(a, b, crop=4) == float("inf")
    assert psnr(a, b, crop=0) < 30
    assert crop_border(a, 4).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="leaves nothing"):
        crop_border(a, 20)


def test_ssim_is_symmetric_and_drops_with_noise() -> None:
    rng = np.random.default_rng(2)
    a = rng.random((3, 48, 48))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    c = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    assert 1.0 > ssim(a, b) > ssim(a, c)


def test_accepts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    x = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x.clone()) == float("inf")


# ------------------------------------------------------------------------------------------------
# Calibration against published values
# ------------------------------------------------------------------------------------------------
def test_psnr_matches_pyiqa_calibration() -> None:
    """pyiqa's default ``psnr`` is on RGB (Y only in ``psnry``)."""
    ours = np.array([psnr(d, r, test_y_channel=False) for d, r in load_pairs()])
    for row in ("official", "pyiqa"):
        assert pyiqa_relative_error(ours, np.array(CALIBRATION["psnr"][row])) < 0.01
    np.testing.assert_allclose(ours, CALIBRATION["psnr"]["pyiqa"], atol=2e-4)


def test_ssim_matches_pyiqa_calibration() -> None:
    """pyiqa's default ``ssim`` is on Y of YIQ, rounded to 8 bits."""
    ours = np.array([ssim(d, r, color_space="yiq") for d, r in load_pairs()])
    for row in ("official", "pyiqa"):
        assert pyiqa_relative_error(ours, np.array(CALIBRATION["ssim"][row])) < 0.01
    np.testing.assert_allclose(ours, CALIBRATION["ssim"]["pyiqa"], atol=1e-4)


def test_y_ycbcr_matches_pyiqa_live() -> None:
    """The paper's setting (Y of YCbCr, border crop 4) against pyiqa computed here."""
    torch = pytest.importorskip("torch")
    pyiqa = pytest.importorskip("pyiqa")
    pairs = load_pairs()[:2]
    dev = torch.device("cpu")
    p = pyiqa.create_metric(
        "psnr", test_y_channel=True, color_space="ycbcr", crop_border=4, device=dev
    )
    s = pyiqa.create_metric("ssim", color_space="ycbcr", crop_border=4, device=dev)
    for d, r in pairs:
        dt, rt = (torch.from_numpy(x)[None].float() for x in (d, r))
        assert psnr(d, r, crop=4) == pytest.approx(float(p(dt, rt)), abs=0.03)
        assert ssim(d, r, crop=4) == pytest.approx(float(s(dt, rt)), abs=1e-5)


def test_torch_twin_matches_numpy_psnr() -> None:
    """``psnr_torch`` (training validation) and ``psnr`` (evaluation) give the same number."""
    torch = pytest.importorskip("torch")
    from slimdiffsr.metrics.psnr_ssim import psnr_torch

    rng = np.random.default_rng(3)
    hr = rng.random((2, 4, 24, 20))
    sr = np.clip(hr + 0.05 * rng.standard_normal(hr.shape), 0, 1)
    for crop, y, space in (
        (0, True, "ycbcr"),
        (4, True, "ycbcr"),
        (2, False, "ycbcr"),
        (4, True, "yiq"),
    ):
        want = [psnr(sr[i], hr[i], crop, test_y_channel=y, color_space=space) for i in range(2)]
        for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
            got = psnr_torch(torch.from_numpy(sr).to(dtype), torch.from_numpy(hr).to(dtype), crop,
                             test_y_channel=y, color_space=space)  # fmt: skip
            assert got.shape == (2,)
            assert got.tolist() == pytest.approx(want, abs=tol)
    same = torch.from_numpy(hr).float()
    assert torch.isinf(psnr_torch(same, same)).all()
    assert 20 < want[0] < 40  # the noise level above, not a degenerate value
    with pytest.raises(ValueError):
        psnr_torch(same, same[..., :8])
