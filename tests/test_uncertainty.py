"""Uncertainty estimator U and its likelihood losses (method.md section 4.2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from slimdiffsr.losses.uncertainty import jeffreys_loss, laplace_loss
from slimdiffsr.models.uncertainty import ResidualBlock, UncertaintyEstimator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_layout_matches_method() -> None:
    u = UncertaintyEstimator()
    widths = [(b.conv1.in_channels, b.conv2.out_channels) for b in u.blocks]
    assert widths == [(4, 64), (64, 64), (64, 64), (64, 64), (64, 5)]
    for b in u.blocks:
        assert b.conv1.bias is None and b.conv2.bias is None
        differ = b.conv1.in_channels != b.conv2.out_channels
        assert isinstance(b.shortcut, nn.Conv2d) == differ
        if differ:
            assert b.shortcut.kernel_size == (1, 1) and b.shortcut.bias is None


def test_residual_block_is_conv_relu_conv_plus_shortcut() -> None:
    b = ResidualBlock(3, 3)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(b(x), b.conv2(torch.relu(b.conv1(x))) + x)


@pytest.mark.parametrize("logvar_channels", [1, 4])
def test_outputs(logvar_channels: int) -> None:
    u = UncertaintyEstimator(hidden_channels=8, num_blocks=1, logvar_channels=logvar_channels)
    z = torch.randn(2, 4, 6, 5)
    out = u(z)
    assert out.mean.shape == z.shape and out.residual.shape == z.shape
    assert out.logvar.shape == (2, logvar_channels, 6, 5)
    torch.testing.assert_close(out.mean, z + out.residual)


def test_logvar_is_clamped() -> None:
    u = UncertaintyEstimator(hidden_channels=8, num_blocks=0, logvar_range=(-1.0, 1.0))
    with torch.no_grad():
        u.blocks[-1].conv2.weight.mul_(1e4)
    s = u(torch.randn(1, 4, 8, 8)).logvar.detach()
    assert float(s.min()) >= -1.0 and float(s.max()) <= 1.0
    assert bool(((s == -1.0) | (s == 1.0)).any())


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="logvar_channels"):
        UncertaintyEstimator(logvar_channels=2)
    with pytest.raises(ValueError, match="logvar_range"):
        UncertaintyEstimator(logvar_range=(1.0, -1.0))


def test_save_load_round_trip(tmp_path) -> None:
    u = UncertaintyEstimator(hidden_channels=8, num_blocks=1, logvar_range=(-5.0, 5.0))
    u.save_pretrained(tmp_path / "u")
    v = UncertaintyEstimator.from_pretrained(tmp_path / "u")
    assert tuple(v.config.logvar_range) == (-5.0, 5.0)
    z = torch.randn(1, 4, 4, 4)
    torch.testing.assert_close(u(z).logvar, v(z).logvar, rtol=0, atol=0)


def test_jeffreys_loss_formula_and_broadcast() -> None:
    g = torch.Generator().manual_seed(0)
    zh, mu = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    s = torch.randn(2, 1, 3, 3, generator=g)
    ref = (0.5 * torch.exp(-s) * (zh - mu) ** 2 + s.expand_as(zh)).mean()
    torch.testing.assert_close(jeffreys_loss(zh, mu, s), ref)
    torch.testing.assert_close(jeffreys_loss(zh, mu, s.expand(2, 4, 3, 3)), ref)


def test_jeffreys_optimum_is_half_squared_error() -> None:
    err = torch.tensor([0.3, 1.0, 2.5])
    zh, mu = err.view(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    s = torch.log(err**2 / 2).view(1, 3, 1, 1).requires_grad_(True)
    jeffreys_loss(zh, mu, s).backward()
    torch.testing.assert_close(s.grad, torch.zeros_like(s), atol=1e-6, rtol=0)
    # and it is a minimum: moving s either way raises the loss
    base = jeffreys_loss(zh, mu, s.detach())
    for d in (-0.1, 0.1):
        assert jeffreys_loss(zh, mu, s.detach() + d) > base


def test_laplace_loss_formula_and_optimum() -> None:
    zh, mu = torch.tensor([[[[1.0]]], [[[-2.0]]]]), torch.zeros(2, 1, 1, 1)
    s = torch.zeros(2, 1, 1, 1)
    assert float(laplace_loss(zh, mu, s)) == pytest.approx((1.0 + 2.0) / 2)
    s_opt = torch.log(zh.abs() / 2).requires_grad_(True)
    laplace_loss(zh, mu, s_opt).backward()
    torch.testing.assert_close(s_opt.grad, torch.zeros_like(s_opt), atol=1e-6, rtol=0)


def test_loss_shape_errors() -> None:
    with pytest.raises(ValueError, match="target"):
        jeffreys_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 3), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="logvar"):
        laplace_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, 2))


def test_estimator_learns_where_errors_are() -> None:
    """A few Adam steps on a toy pair: the loss falls and s rises where z_H differs from z_L."""
    torch.manual_seed(0)
    u = UncertaintyEstimator(hidden_channels=16, num_blocks=1)
    opt = torch.optim.Adam(u.parameters(), lr=3e-3)
    z_l = torch.randn(4, 4, 8, 8)
    noise = torch.zeros_like(z_l)
    noise[..., :4] = torch.randn(4, 4, 8, 4) * 2.0  # left half unpredictable
    z_h = z_l + noise
    losses = []
    for _ in range(60):
        out = u(z_l)
        loss = jeffreys_loss(z_h, out.mean, out.logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert math.isfinite(losses[-1]) and losses[-1] < losses[0]
    s = u(z_l).logvar.detach()
    assert float(s[..., :4].mean()) > float(s[..., 4:].mean()) + 1.0
