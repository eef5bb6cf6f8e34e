"""Geometric self-ensemble (``engine.ensemble``): every copy is mapped back exactly, numpy and
torch agree, and the engine, the CLI, the worker protocol and ``evaluate`` all run the same thing."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from engine_util import nano_model, texture, write_raster

from slimdiffsr.engine.ensemble import check_ensemble, self_ensemble
from slimdiffsr.engine.run import Upscaler, upscale
from slimdiffsr.errors import InputError


def _nearest2(x):
    """x2 nearest-neighbour upsampling: commutes with every flip and rotation."""
    if isinstance(x, np.ndarray):
        return x.repeat(2, axis=-2).repeat(2, axis=-1)
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def _skewed(x):
    """Not equivariant: adds a ramp along the last axis of whatever it is given."""
    w = x.shape[-1]
    ramp = np.linspace(0.0, 1.0, w, dtype=np.float32)
    return x + (ramp if isinstance(x, np.ndarray) else torch.from_numpy(ramp))


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_transforms_are_undone_on_a_non_square_batch(n: int) -> None:
    x = np.random.default_rng(0).random((2, 3, 5, 7), dtype=np.float32)
    for arr in (x, torch.from_numpy(x)):
        y = self_ensemble(_nearest2, arr, n)
        assert tuple(y.shape) == (2, 3, 10, 14)
        np.testing.assert_allclose(np.asarray(y), _nearest2(x), atol=1e-6)


def test_numpy_and_torch_agree_and_orientation_errors_average_out() -> None:
    x = np.zeros((1, 1, 4, 6), np.float32)
    a = self_ensemble(_skewed, x, 8)
    b = self_ensemble(_skewed, torch.from_numpy(x), 8).numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)
    # a ramp seen from all eight sides averages to a symmetric surface: its flips agree
    np.testing.assert_allclose(a, a[..., ::-1], atol=1e-6)
    np.testing.assert_allclose(a, a[..., ::-1, :], atol=1e-6)
    # and the plain forward is unchanged by n = 1
    np.testing.assert_array_equal(self_ensemble(_skewed, x, 1), _skewed(x))


def test_sizes_are_checked() -> None:
    assert check_ensemble(8) == 8
    with pytest.raises(ValueError, match="1, 2, 4, 8"):
        check_ensemble(3)
    with pytest.raises(InputError, match="ensemble must be one of"):
        Upscaler("bicubic", ensemble=16)


def test_engine_forward_is_the_mean_of_the_eight_views() -> None:
    model = nano_model()
    up = Upscaler(model, device="cpu", runtime="torch", ensemble=8)
    x = torch.from_numpy(texture(3, 24, 32, seed=1)[None] * 2 - 1)
    got = up.forward(x)
    with torch.inference_mode():
        views = []
        for flip in (False, True):
            for k in range(4):
                t = x.flip(-1) if flip else x
                y = model(t.rot90(k, dims=(-2, -1))).rot90(-k, dims=(-2, -1))
                views.append(y.flip(-1) if flip else y)
        want = torch.stack(views).mean(0)
        plain = model(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (got - plain).abs().mean() > 1e-4  # the random model is not symmetric: not vacuous


def test_upscale_with_ensemble_records_it_and_keeps_the_picture(tmp_path) -> None:
    data = (texture(3, 40, 48, seed=2) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", data)
    outs = {}
    for n in (1, 4):
        r = upscale(src, tmp_path / f"e{n}.tif", model=nano_model(), device="cpu", ensemble=n)
        assert r.summary["ensemble"] == n
        with rasterio.open(r.output) as d:
            assert d.tags()["SLIMDIFFSR_ENSEMBLE"] == str(n)
            outs[n] = d.read().astype(np.float32)
    diff = np.abs(outs[4] - outs[1])
    assert 0 < diff.mean() < 8  # a different, close result (DN)
    # down(SR) still agrees with the input
    down = outs[4].reshape(3, 40, 4, 48, 4).mean(axis=(2, 4))
    assert np.abs(down - data).mean() < 6


def test_protocol_accepts_only_the_sizes() -> None:
    from slimdiffsr import protocol as P

    ok = P.validate_upscale_params({"input": "a.tif", "output": "b.tif", "ensemble": 8})
    assert ok["ensemble"] == 8
    with pytest.raises(P.ProtocolError, match="ensemble"):
        P.validate_upscale_params({"input": "a.tif", "output": "b.tif", "ensemble": 3})


def test_evaluate_rows_per_ensemble_size() -> None:
    from slimdiffsr.evaluate.modes import parse_ensembles, with_ensembles
    from slimdiffsr.evaluate.scoring import EvaluateError

    assert parse_ensembles("1,8,8") == [1, 8]
    with pytest.raises(EvaluateError, match="--ensemble"):
        parse_ensembles("1,5")
    rows = with_ensembles([("bicubic", "B"), ("m", "M")], [1, 8])
    assert [(label, n) for label, _, n in rows] == [("bicubic", 1), ("m", 1), ("m x8", 8)]
