"""Timestep inversion and the noise-level predictor (method.md section 4.3)."""

from __future__ import annotations

import math

import pytest
import torch

from slimdiffsr.models.timestep import (
    SD_LOG_SIGMA_RANGE,
    SD_SIGMAS,
    NoiseLevelPredictor,
    alpha_bar_from_sigma,
    log_sigma_bounds,
    per_image_sigma,
    scaled_linear_alphas_cumprod,
    sigma_to_timestep,
    sigmas_from_alphas_cumprod,
    timestep_to_sigma,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("t", "sigma"), [(1, 0.041), (100, 0.344), (200, 0.572), (500, 1.618), (999, 14.61)]
)
def test_reference_sigmas(t: int, sigma: float) -> None:
    assert float(SD_SIGMAS[t]) == pytest.approx(sigma, abs=5e-4 * max(1.0, sigma))


def test_table_matches_diffusers_scheduler() -> None:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    ref = sigmas_from_alphas_cumprod(sched.alphas_cumprod)
    torch.testing.assert_close(SD_SIGMAS, ref, rtol=5e-5, atol=0)  # float32 there
    assert SD_SIGMAS.dtype == torch.float64 and SD_SIGMAS.numel() == 1000


def test_exact_at_table_points() -> None:
    t = sigma_to_timestep(SD_SIGMAS.float(), SD_SIGMAS)
    assert t.dtype == torch.float32
    assert torch.equal(t, torch.arange(1000, dtype=torch.float32))


def test_monotone() -> None:
    sigma = torch.logspace(-2, 1.3, 20001)
    t = sigma_to_timestep(sigma, SD_SIGMAS)
    assert bool((t[1:] >= t[:-1]).all())
    inside = (sigma > SD_SIGMAS[0]) & (sigma < SD_SIGMAS[-1])
    ti = t[inside]
    assert bool((ti[1:] > ti[:-1]).all())


def test_inverse_of_forward_schedule() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.rand(500, generator=g) * 999
    back = sigma_to_timestep(timestep_to_sigma(t, SD_SIGMAS), SD_SIGMAS)
    torch.testing.assert_close(back, t, atol=2e-3, rtol=0)
    sigma = torch.exp(torch.empty(500).uniform_(math.log(0.03), math.log(14.6), generator=g))
    again = timestep_to_sigma(sigma_to_timestep(sigma, SD_SIGMAS), SD_SIGMAS)
    torch.testing.assert_close(again, sigma, rtol=1e-4, atol=0)


def test_alpha_bar_matches_schedule() -> None:
    abar = scaled_linear_alphas_cumprod()
    torch.testing.assert_close(alpha_bar_from_sigma(SD_SIGMAS), abar, rtol=1e-12, atol=0)


def test_finite_gradients_equal_slope() -> None:
    sigma = torch.tensor([0.05, 0.344, 1.0, 5.0, 14.0], requires_grad=True)
    t = sigma_to_timestep(sigma, SD_SIGMAS)
    t.sum().backward()
    assert torch.isfinite(sigma.grad).all() and bool((sigma.grad > 0).all())
    i = t.detach().floor().long()
    slope = 1.0 / (SD_SIGMAS[i + 1] - SD_SIGMAS[i]).float()
    torch.testing.assert_close(sigma.grad, slope, rtol=1e-4, atol=0)


def test_clamping_at_both_ends() -> None:
    sigma = torch.tensor([1e-6, 0.01, 20.0, 1e4], requires_grad=True)
    t = sigma_to_timestep(sigma, SD_SIGMAS)
    assert t.tolist() == [0.0, 0.0, 999.0, 999.0]
    t.sum().backward()
    assert torch.equal(sigma.grad, torch.zeros(4))
    assert timestep_to_sigma(torch.tensor([-5.0, 2000.0]), SD_SIGMAS).tolist() == pytest.approx(
        [float(SD_SIGMAS[0]), float(SD_SIGMAS[-1])], rel=1e-6
    )


def test_any_shape_and_half_input() -> None:
    sigma = torch.full((2, 1, 3, 4), 1.618, dtype=torch.bfloat16)
    t = sigma_to_timestep(sigma, SD_SIGMAS)
    assert t.shape == sigma.shape and t.dtype == torch.float32
    assert float(t.mean()) == pytest.approx(500, abs=2)


def test_table_rejects_non_ascending() -> None:
    with pytest.raises(ValueError, match="ascending"):
        sigmas_from_alphas_cumprod(torch.tensor([0.5, 0.9, 0.1]))
    with pytest.raises(ValueError, match="t_min"):
        log_sigma_bounds(SD_SIGMAS, 10, 5)


def test_per_image_sigma_is_rms() -> None:
    m = torch.tensor([1.0, 3.0, 1.0, 3.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    m[1] *= 2
    torch.testing.assert_close(per_image_sigma(m), torch.tensor([5**0.5, 2 * 5**0.5]))


def test_predictor_starts_at_analytic_level_and_clamps() -> None:
    p = NoiseLevelPredictor(hidden_channels=8, num_blocks=2)
    assert p.config.log_sigma_min == pytest.approx(math.log(float(SD_SIGMAS[1])))
    assert (p.config.log_sigma_min, p.config.log_sigma_max) == SD_LOG_SIGMA_RANGE
    s = torch.linspace(-3, 3, 2 * 1 * 4 * 4).view(2, 1, 4, 4)
    z = torch.randn(2, 4, 4, 4)
    torch.testing.assert_close(p(s, z), 0.5 * s)
    extreme = torch.tensor([-20.0, 20.0]).view(1, 1, 1, 2)
    out = p(extreme, torch.zeros(1, 4, 1, 2)).flatten().tolist()
    assert out == pytest.approx(list(SD_LOG_SIGMA_RANGE))


def test_predictor_learns_through_timestep(tmp_path) -> None:
    p = NoiseLevelPredictor(hidden_channels=8, num_blocks=1)
    s, z = torch.zeros(1, 1, 4, 4), torch.randn(1, 4, 4, 4)
    t = sigma_to_timestep(per_image_sigma(p(s, z).exp()), SD_SIGMAS)
    t.sum().backward()
    g = p.conv_out.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    p.save_pretrained(tmp_path / "p")
    q = NoiseLevelPredictor.from_pretrained(tmp_path / "p")
    for (n, a), (_, b) in zip(p.state_dict().items(), q.state_dict().items()):
        assert torch.equal(a, b), n
