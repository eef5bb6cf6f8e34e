"""`slimdiffsr evaluate`: the three modes on tiny GeoTIFF folders, JSON, report, no network."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from slimdiffsr.evaluate import main
from slimdiffsr.weights import weights_dir


def _write(path: Path, arr: np.ndarray) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    c, h, w = arr.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=c, dtype=arr.dtype,
        crs="EPSG:32611", transform=from_origin(300000, 4100000, 0.1, 0.1),
    ) as dst:  # fmt: skip
        dst.write(arr)
    return path


def _smooth_image(rng: np.random.Generator, bands: int, h: int, w: int) -> np.ndarray:
    """Low-frequency uint8 texture, so bicubic is far from trivial but far from hopeless."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(rng.random((1, bands, h // 8, w // 8)).astype(np.float32))
    t = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)[0].numpy()
    t = t + rng.normal(0, 0.02, t.shape)
    return (np.clip(t, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture
def hr_dir(tmp_path: Path) -> Path:
    d = tmp_path / "hr"
    d.mkdir()
    rng = np.random.default_rng(0)
    _write(d / "a.tif", _smooth_image(rng, 3, 66, 70))  # not a multiple of 4: cropped
    _write(d / "b.tif", _smooth_image(rng, 4, 64, 64))  # RGBN: bands 1-3 are used
    return d


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("evaluation tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _read(p: Path) -> dict:
    return json.loads(p.read_text())


def test_model_driven_bicubic_json_and_table(
    hr_dir: Path, tmp_path: Path, capsys, no_network
) -> None:
    out = tmp_path / "m.json"
    rc = main(["--model", "bicubic", "--hr", str(hr_dir), "--json", str(out), "-q",
               "--metrics", "psnr,ssim,consistency,sam,detail"])  # fmt: skip
    assert rc == 0
    doc = _read(out)
    assert doc["mode"] == "model" and doc["scale"] == 4 and doc["degradation"] == "rs"
    assert doc["bands"] == [1, 2, 3]
    bic = doc["methods"]["bicubic"]
    assert set(bic["images"]) == {"a", "b"}
    assert 20 < bic["mean"]["psnr"] < 60 and 0 < bic["mean"]["ssim"] < 1
    assert bic["images"]["a"]["omission"] == 1.0  # bicubic is the "no new detail" answer
    assert "psnr↑" in capsys.readouterr().out


def test_model_driven_matches_build_paired_val_lr(hr_dir: Path, tmp_path: Path) -> None:
    """Same seeds and crops as training validation, so the numbers are comparable."""
    from slimdiffsr.data.datasets import build_paired_val
    from slimdiffsr.evaluate import parse_args
    from slimdiffsr.metrics.psnr_ssim import psnr

    out = tmp_path / "m.json"
    main(["--model", "bicubic", "--hr", str(hr_dir), "--json", str(out), "-q", "--bands", "1,2,3",
          "--metrics", "psnr"])  # fmt: skip
    val = build_paired_val(str(hr_dir), 4, seed=0, crop_size=None, bands=[1, 2, 3])
    from slimdiffsr.models.bicubic import bicubic_upsample

    a = parse_args(["--model", "bicubic", "--hr", str(hr_dir)])
    assert a.crop_border == 4
    for item in val.pairs:
        sr = ((bicubic_upsample(item["lr"][None] * 2 - 1, 4)[0].clamp(-1, 1) + 1) / 2).numpy()
        sr = np.round(sr * 255) / 255
        want = psnr(sr, item["hr"].numpy(), crop=4)
        got = _read(out)["methods"]["bicubic"]["images"][item["name"]]["psnr"]
        assert got == pytest.approx(want, abs=1e-3)


def test_model_driven_is_deterministic_and_seed_dependent(hr_dir: Path, tmp_path: Path) -> None:
    def run(seed: int, name: str) -> float:
        p = tmp_path / name
        main(["--model", "bicubic", "--hr", str(hr_dir), "--seed", str(seed), "--json", str(p),
              "-q", "--metrics", "psnr"])  # fmt: skip
        return _read(p)["methods"]["bicubic"]["mean"]["psnr"]

    assert run(0, "a.json") == run(0, "b.json") != run(1, "c.json")


@pytest.mark.slow
def test_student_model_file_is_evaluated_beside_bicubic(hr_dir: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from slimdiffsr.models.student import SlimDiffSRStudent

    torch.manual_seed(0)
    m = SlimDiffSRStudent.from_preset("nano")
    path = m.save_model(tmp_path / "tiny.safetensors", m.make_card("tiny-x4"))
    out = tmp_path / "m.json"
    rep = tmp_path / "report"
    rc = main(["--model", str(path), "--hr", str(hr_dir), "--max-size", "32", "--max-images", "1",
               "--json", str(out), "--report", str(rep), "-q", "--metrics", "psnr,consistency"])  # fmt: skip
    assert rc == 0
    doc = _read(out)
    assert list(doc["methods"]) == ["bicubic", "tiny-x4"]
    from slimdiffsr.models.card import file_sha256

    assert doc["models"]["tiny-x4"] == file_sha256(path)[:16]
    assert (rep / "table.md").read_text().count("| tiny-x4 |") == 1
    assert (rep / "table.csv").is_file() and (rep / "quality_speed.png").is_file()
    assert (rep / "crops" / "a.png").is_file()


def test_paired_mode_identical_and_resized(hr_dir: Path, tmp_path: Path, capsys) -> None:
    import rasterio

    sr_dir = tmp_path / "sr"
    sr_dir.mkdir()
    with rasterio.open(hr_dir / "a.tif") as src:
        _write(sr_dir / "a.tif", src.read())  # identical: PSNR inf
    _write(sr_dir / "b.tif", _smooth_image(np.random.default_rng(5), 4, 48, 48))  # other size
    out = tmp_path / "p.json"
    rc = main(["--sr", str(sr_dir), "--hr", str(hr_dir), "--json", str(out), "--name", "mine",
               "--metrics", "psnr,ssim"])  # fmt: skip
    assert rc == 0
    doc = _read(out)
    assert doc["mode"] == "paired"
    imgs = doc["methods"]["mine"]["images"]
    assert imgs["a"]["psnr"] == "inf" and imgs["a"]["ssim"] == pytest.approx(1.0)
    assert doc["methods"]["mine"]["mean"]["psnr"] == pytest.approx(imgs["b"]["psnr"])
    assert any("resized" in n for n in doc["notes"])
    assert "resized" in capsys.readouterr().out


def test_missing_weights_skip_with_reason(hr_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    rc = main(["--sr", str(hr_dir), "--hr", str(hr_dir), "--json", str(out), "-q",
               "--weights-dir", str(tmp_path / "empty"), "--metrics", "psnr,lpips,dists"])  # fmt: skip
    assert rc == 0
    doc = _read(out)
    assert "lpips_alex.safetensors" in doc["skipped"]["lpips"]
    assert "provision" in doc["skipped"]["dists"]
    assert "lpips" not in doc["methods"][hr_dir.name]["mean"]


def test_no_reference_mode_with_lr_consistency(hr_dir: Path, tmp_path: Path) -> None:
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    sr_dir = tmp_path / "sr"
    sr_dir.mkdir()
    lr = _smooth_image(np.random.default_rng(1), 3, 16, 16)
    _write(lr_dir / "x.tif", lr)
    _write(sr_dir / "x.tif", np.kron(lr, np.ones((1, 4, 4), np.uint8)))  # nearest: consistent
    out = tmp_path / "n.json"
    rc = main(["--sr", str(sr_dir), "--lr", str(lr_dir), "--json", str(out), "-q",
               "--weights-dir", str(tmp_path / "empty"), "--metrics", "niqe,consistency,sam"])  # fmt: skip
    assert rc == 0
    doc = _read(out)
    assert doc["mode"] == "no-reference"
    assert doc["methods"]["sr"]["images"]["x"]["consistency"] == 0.0
    assert "niqe" in doc["skipped"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "bicubic"], "needs HR images"),
        (["--sr", "x", "--model", "bicubic", "--hr", "y"], "not both"),
        (["--sr", "x", "--metrics", "psnr"], "need a reference"),
        (["--sr", "x", "--hr", "y", "--metrics", "fid"], "unknown metrics"),
        (["--sr", "x", "--metrics", "seam"], "--seam-tile"),
    ],
)
def test_argument_errors(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_refuses_to_overwrite_json(hr_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.json"
    out.write_text("{}")
    with pytest.raises(SystemExit):
        main(["--model", "bicubic", "--hr", str(hr_dir), "--json", str(out)])
    assert "--overwrite" in capsys.readouterr().err


def test_missing_input_folder_is_one_line_error(tmp_path: Path, capsys) -> None:
    rc = main(["--model", "bicubic", "--hr", str(tmp_path / "nope")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_lpips_runs_offline_when_provisioned(hr_dir: Path, tmp_path: Path, no_network) -> None:
    if not (weights_dir() / "lpips_alex.safetensors").is_file():
        pytest.skip(f"lpips_alex.safetensors not in {weights_dir()} (run the provision command)")
    out = tmp_path / "m.json"
    assert main(["--model", "bicubic", "--hr", str(hr_dir), "--json", str(out), "-q",
                 "--metrics", "lpips"]) == 0  # fmt: skip
    assert 0 < _read(out)["methods"]["bicubic"]["mean"]["lpips"] < 1


@pytest.mark.slow
def test_validation_split_bicubic(shared_data: Path, tmp_path: Path) -> None:
    split = Path(__file__).resolve().parents[1] / "training" / "splits" / "shared_data.json"
    if not split.is_file():
        pytest.skip(f"split file {split} not found")
    out = tmp_path / "v.json"
    rc = main(["--model", "bicubic", "--split", str(split), "--max-images", "3", "--max-size",
               "128", "--json", str(out), "-q", "--metrics", "psnr,ssim,consistency"])  # fmt: skip
    assert rc == 0
    m = _read(out)["methods"]["bicubic"]["mean"]
    assert 18 < m["psnr"] < 40


def test_metric_failing_on_an_image_gives_nan_and_a_note(tmp_path: Path) -> None:
    if not (weights_dir() / "niqe_pris_params.safetensors").is_file():
        pytest.skip(f"niqe_pris_params.safetensors not in {weights_dir()}")
    sr_dir = tmp_path / "sr"
    sr_dir.mkdir()
    _write(sr_dir / "tiny.tif", _smooth_image(np.random.default_rng(2), 3, 32, 32))
    out = tmp_path / "n.json"
    assert main(["--sr", str(sr_dir), "--json", str(out), "-q", "--metrics", "niqe"]) == 0
    doc = _read(out)
    assert doc["methods"]["sr"]["images"]["tiny"]["niqe"] == "nan"
    assert any("niqe could not score" in n for n in doc["notes"])


@pytest.mark.slow
def test_efficiency_benchmark_measures_in_process() -> None:
    """benchmarks/bench_efficiency.py: one cheap model, and the ratio table."""
    import importlib.util
    import sys

    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location(
        "bench_efficiency", bench_dir / "bench_efficiency.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(bench_dir))
    try:
        spec.loader.exec_module(mod)
        row = mod.measure("bicubic", 32, 4, "cpu", 1, "fp32")
    finally:
        sys.path.remove(str(bench_dir))
    assert row["params"] == 0 and row["macs"] == 0 and row["latency_s"] > 0
    table = mod.format_rows([row], row)
    assert "bicubic" in table and "GMACs" in table


def test_results_by_sensor_table_and_json(tmp_path: Path, capsys) -> None:
    """Images under naip/ and landsat8/ folders are reported per sensor; a float [0, 1] raster
    is read as such and its consistency is in 8-bit DN (x 255)."""
    rng = np.random.default_rng(3)
    naip, l8 = tmp_path / "naip", tmp_path / "landsat8"
    naip.mkdir()
    l8.mkdir()
    _write(naip / "n1.tif", _smooth_image(rng, 3, 64, 64))
    _write(naip / "n2.tif", _smooth_image(rng, 3, 64, 64))
    _write(l8 / "l1.tif", (_smooth_image(rng, 3, 64, 64) / 255.0).astype(np.float32))
    out = tmp_path / "s.json"
    rc = main(["--model", "bicubic", "--hr", str(naip), "--hr", str(l8), "--json", str(out), "-q",
               "--metrics", "psnr,consistency"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "by sensor: NAIP (1 m) (2 images)" in text
    assert "by sensor: Landsat-8 (30 m) (1 images)" in text
    doc = _read(out)
    groups = doc["by_sensor"]
    assert set(groups) == {"NAIP (1 m)", "Landsat-8 (30 m)"}
    per = doc["methods"]["bicubic"]["images"]
    assert groups["NAIP (1 m)"]["bicubic"]["psnr"] == pytest.approx(
        (per["n1"]["psnr"] + per["n2"]["psnr"]) / 2
    )
    # same texture statistics in both groups: the float raster's consistency is on the 8-bit scale
    c8, cf = groups["NAIP (1 m)"]["bicubic"]["consistency"], per["l1"]["consistency"]
    assert 0.2 < cf / c8 < 5


def test_checkpoints_of_one_run_get_distinct_labels() -> None:
    from slimdiffsr.evaluate.modes import unique_labels

    items = [
        ("m", "runs/a/checkpoint-100/m.safetensors"),
        ("m", "runs/a/checkpoint-200/m.safetensors"),
        ("m", "runs/b/checkpoint-100/m.safetensors"),
        ("other", "runs/a/checkpoint-100/other.safetensors"),
    ]
    assert unique_labels(items) == [
        "m (a/checkpoint-100/m.safetensors)",
        "m (checkpoint-200/m.safetensors)",
        "m (b/checkpoint-100/m.safetensors)",
        "other",
    ]


def test_models_with_different_value_contracts_are_named() -> None:
    from types import SimpleNamespace

    from slimdiffsr.evaluate.modes import contract_disagreement

    def model(vc: dict) -> SimpleNamespace:
        return SimpleNamespace(card=SimpleNamespace(value_contract=vc))

    u8 = {"kind": "fixed", "low": [0.0], "high": [255.0]}
    unit = {"kind": "fixed", "low": [0.0], "high": [1.0]}
    assert contract_disagreement([("a", model(u8)), ("b", model(u8))]) is None
    msg = contract_disagreement([("a", model(u8)), ("ckpt", model(unit))])
    assert msg is not None and "a's value contract" in msg and "ckpt" in msg
