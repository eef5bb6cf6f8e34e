"""Distillation (adapters, MSE, MMD) and reconstruction losses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slimdiffsr.losses.distill import (
    FeatureAdapters,
    distillation_loss,
    feature_mmd,
    feature_mse,
    median_bandwidth,
    mmd_rbf,
)
from slimdiffsr.losses.reconstruction import LPIPSLoss, l1_loss, l2_loss


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _brute_mmd(x: torch.Tensor, y: torch.Tensor, unbiased: bool) -> float:
    """The method's formula, written as explicit double loops in float64."""
    x, y = x.double(), y.double()
    z = torch.cat([x, y])
    d = [float(((z[i] - z[j]) ** 2).sum()) for i in range(len(z)) for j in range(len(z)) if i != j]
    h = float(torch.tensor(d).median())

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        r = float(((a - b) ** 2).sum())
        return sum(float(torch.exp(torch.tensor(-r / (g * h)))) for g in (0.25, 0.5, 1, 2, 4)) / 5

    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j or not unbiased)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j or not unbiased)
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
    if unbiased:
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)
    return sxx / n**2 + syy / m**2 - 2 * sxy / (n * m)


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_equals_brute_force(unbiased: bool) -> None:
    x = torch.randn(7, 3, generator=_gen(1))
    y = torch.randn(6, 3, generator=_gen(2)) + 0.5
    assert float(mmd_rbf(x, y, unbiased=unbiased)) == pytest.approx(
        _brute_mmd(x, y, unbiased), abs=1e-5
    )


def test_mmd_self_symmetric_and_grows_with_shift() -> None:
    x = torch.randn(64, 8, generator=_gen(3))
    y = torch.randn(64, 8, generator=_gen(4))
    # unbiased within-sample sums skip i = j, the cross sum cannot: self-MMD is -O(1/n), not 0
    assert abs(float(mmd_rbf(x, x))) <= 2 / len(x)
    big = torch.randn(512, 8, generator=_gen(3))
    assert abs(float(mmd_rbf(big, big))) < 4e-3
    assert float(mmd_rbf(x, x, unbiased=False)) == pytest.approx(0.0, abs=1e-6)
    assert float(mmd_rbf(x, y)) == pytest.approx(float(mmd_rbf(y, x)), abs=1e-6)
    values = [float(mmd_rbf(x, y + s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[-1] > 10 * abs(values[0])
    assert float(mmd_rbf(x, y + 1.0, unbiased=False)) >= 0


def test_mmd_has_finite_gradients_and_detached_bandwidth() -> None:
    x = torch.randn(16, 4, generator=_gen(5), requires_grad=True)
    y = torch.randn(16, 4, generator=_gen(6)) + 1.0
    mmd_rbf(x, y).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not median_bandwidth(x, y).requires_grad
    same = torch.zeros(4, 2, requires_grad=True)  # all distances 0: no NaN from h = 0
    mmd_rbf(same, torch.zeros(4, 2)).backward()
    assert torch.isfinite(same.grad).all()


def test_feature_mmd_subsamples_tokens_with_shared_indices() -> None:
    s = torch.randn(2, 4, 8, 8, generator=_gen(7))
    same = feature_mmd([s], [s.clone()], max_tokens=16, unbiased=False, generator=_gen(0))
    assert float(same) == pytest.approx(0, abs=1e-5)  # 0 only if both sides share indices
    a = feature_mmd([s], [s + 1], max_tokens=16, generator=_gen(0))
    b = feature_mmd([s], [s + 1], max_tokens=16, generator=_gen(0))
    assert torch.equal(a, b) and float(a) > 0
    assert torch.isfinite(feature_mmd([s], [s + 1], max_tokens=16))  # strided when no generator


def test_adapters_identity_and_projection() -> None:
    ad = FeatureAdapters([4, 6], [4, 8])
    f = [torch.randn(2, 4, 3, 3), torch.randn(2, 6, 3, 3)]
    out = ad(f)
    assert torch.allclose(out[0], f[0], atol=1e-6)
    assert out[1].shape == (2, 8, 3, 3)
    with pytest.raises(ValueError, match="feature levels"):
        FeatureAdapters([4], [4, 8])


def test_feature_mse_and_total_loss() -> None:
    t = [torch.randn(2, 4, 3, 3, generator=_gen(8)), torch.randn(2, 8, 2, 2, generator=_gen(9))]
    s = [t[0] + 1.0, torch.randn(2, 6, 2, 2, generator=_gen(10), requires_grad=True)]
    ad = FeatureAdapters([4, 6], [4, 8])
    out = distillation_loss(s, t, ad, lambda_mmd=0.5, generator=_gen(0))
    assert set(out) == {"mse", "mmd", "total"}
    assert float(out["total"]) == pytest.approx(float(out["mse"] + 0.5 * out["mmd"]), rel=1e-6)
    out["total"].backward()
    assert torch.isfinite(s[1].grad).all() and all(
        torch.isfinite(p.grad).all() for p in ad.parameters()
    )
    no_mmd = distillation_loss(s, t, ad, use_mmd=False)
    assert float(no_mmd["mmd"]) == 0.0
    assert float(feature_mse([t[0] + 1.0], [t[0]])) == pytest.approx(1.0, rel=1e-5)
    norm = feature_mse([t[0] + 1.0], [t[0]], normalize=True)
    assert float(norm) == pytest.approx(1.0 / float(t[0].pow(2).mean()), rel=1e-4)
    with pytest.raises(ValueError, match="level 1"):
        feature_mse([torch.zeros(1, 2, 3, 3)], [torch.zeros(1, 2, 4, 4)])


def test_mmd_is_fp32_under_autocast() -> None:
    x = torch.randn(8, 4, generator=_gen(11)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mmd_rbf(x, x + 1).dtype == torch.float32


def test_l1_l2() -> None:
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert float(l1_loss(a, b)) == pytest.approx(0.5)
    assert float(l2_loss(a, b)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same shape"):
        l1_loss(a, b[..., :2])


def test_lpips_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lpips_alex.pth"):
        LPIPSLoss(tmp_path / "lpips_alex.pth", net="alex")


@pytest.mark.slow
def test_lpips_loads_local_file(tmp_path: Path) -> None:
    import lpips

    missing = tmp_path / "lpips_alex.pth"

    torch.manual_seed(0)
    torch.save(
        lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False).state_dict(),
        missing,
    )
    loss = LPIPSLoss(missing, net="alex")
    x = torch.rand(1, 4, 32, 32, generator=_gen(12)) * 2 - 1
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, -x)) > 0
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a complete"):
        LPIPSLoss(bad, net="alex")
