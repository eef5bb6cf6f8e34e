"""Learned metrics (LPIPS, DISTS, NIQE) against pyiqa's published calibration values, and the
local-weights rules: nothing is downloaded, a missing file names itself and the fix."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from slimdiffsr.weights import WEIGHT_FILES, WeightsMissingError, require, weights_dir
from tests.test_metrics import CALIBRATION, load_pairs, pyiqa_relative_error


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: metrics must never download."""

    def refuse(*args, **kwargs):
        raise AssertionError("a metric tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _need(*names: str) -> None:
    d = weights_dir()
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        pytest.skip(
            f"weights {missing} not in {d}: run `python -m slimdiffsr.weights provision` "
            "(or set SLIMDIFFSR_WEIGHTS)"
        )


def _check_calibration(metric: str) -> np.ndarray:
    from slimdiffsr.metrics.iqa import build_metric

    m = build_metric(metric)
    pairs = load_pairs()
    ours = np.array([m(d, r) if m.full_reference else m(d) for d, r in pairs])
    err = pyiqa_relative_error(ours, np.array(CALIBRATION[metric]["pyiqa"]))
    assert err < 0.01, f"{metric}: {ours} vs pyiqa {CALIBRATION[metric]['pyiqa']} ({err:.2%})"
    return ours


def test_lpips_alex_matches_calibration(no_network) -> None:
    _need("lpips_alex.safetensors")
    ours = _check_calibration("lpips")
    assert pyiqa_relative_error(ours, np.array(CALIBRATION["lpips"]["official"])) < 0.01
    np.testing.assert_allclose(ours, CALIBRATION["lpips"]["official"], atol=2e-4)


@pytest.mark.slow
def test_dists_matches_calibration(no_network) -> None:
    _need("vgg16_features.safetensors", "dists_alpha_beta.safetensors")
    ours = _check_calibration("dists")
    assert pyiqa_relative_error(ours, np.array(CALIBRATION["dists"]["official"])) < 0.01


@pytest.mark.slow
def test_niqe_matches_calibration(no_network) -> None:
    """pyiqa's NIQE (with BasicSR's pristine parameters) matches pyiqa's published values; the
    MATLAB-original row differs by up to 5 % on I19, as pyiqa's own implementation does."""
    _need("niqe_pris_params.safetensors")
    _check_calibration("niqe")


def test_missing_weight_file_names_file_folder_and_command(tmp_path) -> None:
    from slimdiffsr.metrics.iqa import build_metric

    with pytest.raises(WeightsMissingError) as e:
        build_metric("lpips", tmp_path)
    msg = str(e.value)
    assert "lpips_alex.safetensors" in msg and str(tmp_path) in msg
    assert "python -m slimdiffsr.weights provision" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_pyiqa_metric_without_checkpoint_is_missing_not_downloaded(tmp_path) -> None:
    from slimdiffsr.metrics.iqa import build_metric

    with pytest.raises(WeightsMissingError, match="musiq_koniq_ckpt"):
        build_metric("musiq", tmp_path)


def test_pyiqa_downloader_is_replaced_by_local_lookup(tmp_path) -> None:
    pytest.importorskip("pyiqa")
    import pyiqa.utils.download_util as du

    from slimdiffsr.metrics.iqa import pyiqa_local_files

    original = du.load_file_from_url
    (tmp_path / "x.pth").write_bytes(b"0")
    with pyiqa_local_files(tmp_path):
        assert du.load_file_from_url("https://example.invalid/a/x.pth") == str(tmp_path / "x.pth")
        with pytest.raises(WeightsMissingError, match="y.pth"):
            du.load_file_from_url("https://example.invalid/a/y.pth")
    assert du.load_file_from_url is original


def test_weights_dir_precedence(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLIMDIFFSR_WEIGHTS", str(tmp_path / "env"))
    assert weights_dir() == tmp_path / "env"
    assert weights_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("SLIMDIFFSR_WEIGHTS")
    assert weights_dir().parts[-3:] == (".cache", "slimdiffsr", "weights")
    (tmp_path / "lpips_alex.safetensors").write_bytes(b"x")
    assert require("lpips_alex.safetensors", tmp_path) == tmp_path / "lpips_alex.safetensors"


def test_unknown_metric_lists_known() -> None:
    from slimdiffsr.metrics.iqa import build_metric

    with pytest.raises(ValueError, match="lpips"):
        build_metric("fid")


def test_every_weight_file_has_a_source_and_pinned_hash() -> None:
    from slimdiffsr.weights import SOURCES

    for f in WEIGHT_FILES.values():
        assert f.source in SOURCES
        assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0


def test_single_band_and_rgbn_inputs_use_rgb() -> None:
    torch = pytest.importorskip("torch")
    from slimdiffsr.metrics.iqa import to_rgb_batch

    assert to_rgb_batch(np.zeros((1, 8, 8))).shape == (1, 3, 8, 8)
    x = torch.arange(4.0).view(4, 1, 1).expand(4, 8, 8)
    assert to_rgb_batch(x)[0, :, 0, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="1 or >= 3 bands"):
        to_rgb_batch(np.zeros((2, 8, 8)))


def test_clip_and_timm_downloads_are_blocked_too(tmp_path) -> None:
    pytest.importorskip("pyiqa")
    import pyiqa.archs.clip_model as cm

    from slimdiffsr.metrics.iqa import pyiqa_local_files

    original = cm._download
    with pyiqa_local_files(tmp_path):
        with pytest.raises(WeightsMissingError, match="RN50.pt"):
            cm._download("https://openaipublic.azureedge.net/clip/models/abc/RN50.pt", "/x")
    assert cm._download is original
