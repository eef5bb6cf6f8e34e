"""Degradation pipeline: sizes, determinism, blur/noise physics, value range, config errors."""

from __future__ import annotations

import math

import pytest
import torch

from slimdiffsr.data import degradation as D
from slimdiffsr.data.degradation import DegradationConfig


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _hf_energy(x: torch.Tensor) -> float:
    """Energy of the discrete Laplacian: falls when an image gets smoother."""
    lap = (
        4 * x[..., 1:-1, 1:-1]
        - x[..., :-2, 1:-1]
        - x[..., 2:, 1:-1]
        - x[..., 1:-1, :-2]
        - x[..., 1:-1, 2:]
    )
    return float(lap.pow(2).mean())


@pytest.mark.parametrize("preset", ["realesrgan", "rs", "rs16", "bicubic"])
@pytest.mark.parametrize("scale", [4, 8])
def test_degrade_size_range_and_determinism(preset: str, scale: int) -> None:
    hr = torch.rand(2, 3, 64, 64, generator=_gen(1))
    cfg = DegradationConfig.preset(preset)
    lr = D.degrade(hr, scale, cfg, _gen(7))
    assert lr.shape == (2, 3, 64 // scale, 64 // scale)
    assert lr.dtype == hr.dtype
    assert 0.0 <= float(lr.min()) and float(lr.max()) <= 1.0
    assert torch.equal(lr, D.degrade(hr, scale, cfg, _gen(7)))
    if preset != "bicubic":
        assert not torch.equal(lr, D.degrade(hr, scale, cfg, _gen(8)))


def test_degrade_any_band_count_and_quantisation_levels() -> None:
    hr = torch.rand(2, 4, 32, 32, generator=_gen(2))
    lr8 = D.degrade(hr, 4, DegradationConfig.realesrgan(), _gen(0))
    assert lr8.shape == (2, 4, 8, 8)
    assert torch.allclose(lr8 * 255, (lr8 * 255).round(), atol=1e-4)
    lr12 = D.degrade(hr, 4, DegradationConfig.rs(), _gen(0))
    assert torch.allclose(lr12 * 4095, (lr12 * 4095).round(), atol=1e-3)
    assert not torch.allclose(lr12 * 255, (lr12 * 255).round(), atol=1e-4)


def test_degrade_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="multiple of the scale"):
        D.degrade(torch.rand(1, 3, 30, 32), 4)
    with pytest.raises(ValueError, match="float"):
        D.degrade(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 4)


def test_blur_lowers_high_frequency_energy() -> None:
    x = torch.rand(3, 3, 48, 48, generator=_gen(3))
    k = D.anisotropic_kernels(
        torch.tensor([1.0, 2.0, 0.7]), torch.tensor([1.0, 0.5, 2.0]), torch.tensor([0.0, 0.5, -1.0])
    )
    assert torch.allclose(k.sum(dim=(-2, -1)), torch.ones(3))
    y = D.blur(x, k)
    assert y.shape == x.shape
    assert _hf_energy(y) < 0.3 * _hf_energy(x)
    # a wider kernel smooths more
    narrow = D.blur(
        x, D.anisotropic_kernels(*(torch.tensor([0.5]),) * 2, torch.tensor([0.0])).expand(3, -1, -1)
    )
    wide = D.blur(
        x, D.anisotropic_kernels(*(torch.tensor([2.0]),) * 2, torch.tensor([0.0])).expand(3, -1, -1)
    )
    assert _hf_energy(wide) < _hf_energy(narrow) < _hf_energy(x)


def test_identity_kernel_and_constant_image_are_fixed_points() -> None:
    x = torch.rand(2, 3, 16, 16, generator=_gen(4))
    assert torch.allclose(D.blur(x, D.identity_kernels(2)), x, atol=1e-6)
    const = torch.full((2, 3, 16, 16), 0.3)
    k = D.sample_blur_kernels(2, DegradationConfig.realesrgan().first.blur, _gen(5))
    assert torch.allclose(D.blur(const, k), const, atol=1e-5)
    s = D.sinc_kernels(torch.tensor([math.pi / 3, 2.0]), torch.tensor([21, 7]))
    assert torch.allclose(s.sum(dim=(-2, -1)), torch.ones(2), atol=1e-5)
    assert float(s[0].min()) < 0  # ringing lobes


def test_kernel_sampling_respects_sizes_and_types() -> None:
    cfg = D.BlurConfig(kernel_sizes=(7,), kernel_types=("iso",), kernel_probs=(1.0,), sinc_prob=0.0)
    k = D.sample_blur_kernels(4, cfg, _gen(0))
    assert k.shape == (4, 7, 7)
    assert torch.allclose(k, k.transpose(-1, -2), atol=1e-6)  # isotropic: symmetric
    lr_cfg = DegradationConfig.rs().first.blur
    assert (
        D.sample_blur_kernels(1, lr_cfg, _gen(0), scale=8).shape[-1]
        == 2 * math.ceil(3 * 0.6 * 8) + 1
    )


@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_gaussian_noise_std_matches_sigma(sigma: float) -> None:
    x = torch.full((2, 3, 128, 128), 0.5)
    y = D.gaussian_noise(x, sigma, generator=_gen(0), clip=False)
    assert abs(float((y - x).std()) - sigma) < 0.03 * sigma
    assert abs(float((y - x).mean())) < 0.05 * sigma
    grey = D.gaussian_noise(x, sigma, gray=True, generator=_gen(0), clip=False)
    assert torch.equal(grey[:, 0], grey[:, 1])


def test_poisson_noise_std_matches_shot_noise() -> None:
    x = torch.full((1, 1, 256, 256), 0.25)
    y = D.poisson_noise(x, 1.5, generator=_gen(0), peak=1000.0, clip=False)
    expected = 1.5 * math.sqrt(0.25 / 1000.0)
    assert abs(float((y - x).std()) - expected) < 0.05 * expected


def test_random_noise_keeps_range_and_is_seeded() -> None:
    x = torch.rand(4, 3, 32, 32, generator=_gen(1))
    cfg = DegradationConfig.realesrgan().first.noise
    y = D.random_noise(x, cfg, _gen(3))
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    assert torch.equal(y, D.random_noise(x, cfg, _gen(3)))


def test_jpeg_round_trip_and_quality_order() -> None:
    x = D.blur(torch.rand(1, 3, 32, 32, generator=_gen(2)), D.identity_kernels(1))
    err_lo = (D.jpeg(x, 10) - x).abs().mean()
    err_hi = (D.jpeg(x, 95) - x).abs().mean()
    assert err_hi < err_lo
    assert D.jpeg(torch.rand(2, 4, 16, 16), torch.tensor([50.0, 90.0])).shape == (2, 4, 16, 16)


def test_resize_and_quantize() -> None:
    x = torch.rand(1, 2, 20, 20)
    assert D.resize(x, (10, 5), "area").shape == (1, 2, 10, 5)
    with pytest.raises(ValueError, match="does not exist"):
        D.resize(x, (10, 10), "nearest")
    q = D.quantize(x, 4)
    assert torch.allclose(q * 15, (q * 15).round(), atol=1e-5)


def test_config_is_frozen_and_validated() -> None:
    cfg = DegradationConfig.rs()
    with pytest.raises(AttributeError):
        cfg.quantize_bits = 8  # type: ignore[misc]
    assert cfg.with_(quantize_bits=16).quantize_bits == 16
    with pytest.raises(ValueError, match="kernel_sizes"):
        D.BlurConfig(kernel_sizes=(8,))
    with pytest.raises(ValueError, match="does not exist"):
        DegradationConfig.preset("nope")
    with pytest.raises(ValueError, match="quantize_bits"):
        DegradationConfig(quantize_bits=20)
