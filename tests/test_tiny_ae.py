"""Tiny autoencoder: local weight loading and fused-conv initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from slimdiffsr.models.tiny_ae import build_tiny_autoencoder, init_fused_conv, load_taesd_layers

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"


def test_analytic_fusion_is_exact_for_1x1_then_3x3() -> None:
    torch.manual_seed(0)
    first, second = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 32, 3, padding=1)
    fused = nn.Conv2d(16, 32, 3, padding=1)
    assert init_fused_conv(fused, first, second) == "analytic"
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        # exact except on the one-pixel ring where zero padding of first(x) differs (its bias)
        assert torch.allclose(
            fused(x)[..., 1:-1, 1:-1], second(first(x))[..., 1:-1, 1:-1], atol=1e-5
        )


def test_lstsq_fusion_recovers_representable_composition() -> None:
    """3x3 then a centre-only 3x3: the composition fits in 3x3, so the fit must be exact."""
    torch.manual_seed(0)
    first, second = nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
    with torch.no_grad():
        mask = torch.zeros(3, 3)
        mask[1, 1] = 1
        second.weight.mul_(mask)
    fused = nn.Conv2d(8, 6, 3, padding=1)
    assert init_fused_conv(fused, first, second, samples=2048) == "lstsq"
    x = torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        assert torch.allclose(fused(x), second(first(x)), atol=1e-4)


def test_lstsq_fusion_beats_random_init() -> None:
    torch.manual_seed(0)
    first, second = nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
    fused = nn.Conv2d(8, 6, 3, padding=1)
    x = torch.randn(4, 8, 16, 16)
    with torch.no_grad():
        target = second(first(x))[..., 2:-2, 2:-2]
        before = (fused(x)[..., 2:-2, 2:-2] - target).pow(2).mean()
        init_fused_conv(fused, first, second)
        after = (fused(x)[..., 2:-2, 2:-2] - target).pow(2).mean()
    assert after < 0.5 * before


def test_load_local_taef2_weights() -> None:
    if not WEIGHTS.is_dir():
        pytest.skip(f"shared weights not found at {WEIGHTS}")
    vae = build_tiny_autoencoder(64)
    n = load_taesd_layers(vae, WEIGHTS / "taef2_encoder.pth", WEIGHTS / "taef2_decoder.pth")
    src = torch.load(WEIGHTS / "taef2_encoder.pth", weights_only=True)
    assert n > 60
    assert torch.equal(vae.encoder.layers[1].conv[0].weight, src["1.conv.0.weight"])


def test_missing_weights_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="enc.pth"):
        load_taesd_layers(build_tiny_autoencoder(64), tmp_path / "enc.pth", tmp_path / "dec.pth")
