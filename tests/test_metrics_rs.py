"""RS trust metrics: input consistency, spectral angle, seams, detail classification."""

from __future__ import annotations

import numpy as np
import pytest

from slimdiffsr.metrics.rs import (
    area_downsample,
    consistency_l1,
    consistency_map,
    consistency_sam,
    detail_scores,
    seam_score,
    spectral_angle,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_area_downsample_is_block_mean() -> None:
    x = np.arange(16.0).reshape(1, 4, 4)
    np.testing.assert_allclose(area_downsample(x, 2)[0], [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match="multiple of the scale"):
        area_downsample(np.zeros((1, 5, 4)), 2)


def test_block_constant_sr_is_perfectly_consistent() -> None:
    lr = _rng().random((3, 8, 8))
    sr = np.kron(lr, np.ones((1, 4, 4)))
    assert consistency_l1(sr, lr, 4) == 0.0
    assert consistency_sam(sr, lr, 4) == pytest.approx(0.0, abs=1e-5)


def test_consistency_is_in_raster_units_and_masks() -> None:
    lr = np.full((1, 4, 4), 0.5)
    sr = np.full((1, 16, 16), 0.5 + 2 / 255)
    assert consistency_l1(sr, lr, 4, value_range=255) == pytest.approx(2.0)
    valid = np.zeros((4, 4), bool)
    valid[0, 0] = True
    sr[:, 4:, :] = 0.0  # only outside the valid LR pixel
    assert consistency_l1(sr, lr, 4, 255, valid) == pytest.approx(2.0)
    assert consistency_map(sr, lr, 4).shape == (4, 4)
    with pytest.raises(ValueError, match="x4"):
        consistency_l1(np.zeros((1, 15, 16)), lr, 4)


def test_spectral_angle_ignores_brightness_but_sees_colour() -> None:
    a = _rng(1).random((3, 8, 8)) + 0.1
    assert spectral_angle(a, 2 * a) == pytest.approx(0.0, abs=1e-5)
    b = a.copy()
    b[0] *= 1.5
    assert spectral_angle(a, b) > 1.0
    with pytest.raises(ValueError, match="2 bands"):
        spectral_angle(a[:1], a[:1])


def test_seam_score_detects_steps_on_the_tile_grid() -> None:
    rng = _rng(2)
    smooth = rng.normal(0.5, 0.01, (1, 64, 64))
    assert seam_score(smooth, 16) == pytest.approx(1.0, abs=0.2)
    stepped = smooth.copy()
    for k in range(0, 64, 16):
        stepped[:, :, k : k + 16] += 0.05 * (k // 16 % 2)
    assert seam_score(stepped, 16) > 2.0
    with pytest.raises(ValueError):
        seam_score(smooth, 1)


def test_detail_scores_classify_the_three_cases() -> None:
    rng = _rng(3)
    lr_up = np.full((1, 64, 64), 0.5)
    hr = lr_up + rng.normal(0, 0.1, lr_up.shape)
    # SR = HR: all improvement; SR = lr_up: all omission; SR = other detail: hallucination
    assert detail_scores(hr, hr, lr_up)["improvement"] == 1.0
    assert detail_scores(lr_up, hr, lr_up)["omission"] == 1.0
    fake = lr_up + rng.normal(0, 0.2, lr_up.shape)
    d = detail_scores(fake, hr, lr_up)
    assert d["hallucination"] == 1.0 and d["patches"] == 16
    flat = detail_scores(lr_up, lr_up, lr_up)
    assert flat["patches"] == 0 and np.isnan(flat["improvement"])
