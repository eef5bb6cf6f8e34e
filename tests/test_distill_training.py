"""training/distill.py: config handling, loud early failures, the real script, exact resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slimdiffsr.training.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training" / "distill.py"
CONFIGS = sorted((ROOT / "training" / "configs").glob("*.yaml"))


def _write_tif(path: Path, data: np.ndarray) -> None:
    import rasterio
    from affine import Affine

    b, h, w = data.shape
    with rasterio.open(
        path, "w", driver="GTiff", height=h, width=w, count=b, dtype=data.dtype.name,
        crs="EPSG:32633", transform=Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
    ) as dst:  # fmt: skip
        dst.write(data)


@pytest.fixture()
def tiny_data(tmp_path: Path) -> dict[str, Path]:
    """Smooth random 3-band uint8 images: train/ and val/ folders."""
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", 4), ("val", 2)):
        d = tmp_path / split
        d.mkdir()
        for i in range(n):
            base = rng.random((3, 12, 12))
            img = np.kron(base, np.ones((1, 4, 4)))[:, :40, :40]
            _write_tif(d / f"{i}.tif", (img * 255).astype(np.uint8))
        out[split] = d
    return out


def _tiny_overrides(data: dict[str, Path], out: Path, **extra: object) -> list[str]:
    values = {
        "train_data": str(data["train"]),
        "val_data": str(data["val"]),
        "student_preset": "nano",
        "crop_size": 32,
        "val_crop_size": 32,
        "train_batch_size": 2,
        "max_train_steps": 3,
        "checkpointing_steps": 2,
        "validation_steps": 2,
        "degradation": "rs",
        "learning_rate": 1e-3,
        "loss_l1": 1.0,
        "loss_l2": 0.0,
        "report_to": "none",
        "output_dir": str(out),
        **extra,
    }
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()]


# -- configuration ----------------------------------------------------------------------------
def test_unknown_key_fails_with_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean learning_rate"):
        load_config(None, ["learnig_rate=1e-4"])
    f = tmp_path / "c.yaml"
    f.write_text("crop_sise: 64\n")
    with pytest.raises(ConfigError, match="crop_sise"):
        load_config(f)


def test_values_are_typed_and_checked() -> None:
    cfg = load_config(
        None, ["learning_rate=5e-5", "bands=[1, 2]", "band_names=[r, n]", "teacher=null"]
    )
    assert cfg.learning_rate == 5e-5 and cfg.bands == [1, 2] and cfg.teacher is None
    with pytest.raises(ConfigError, match="multiple of scale"):
        load_config(None, ["crop_size=130"])
    with pytest.raises(ConfigError, match="lpips_weights"):
        load_config(None, ["loss_lpips=2.5"])
    with pytest.raises(ConfigError, match="must be int"):
        load_config(None, ["max_train_steps=many"])
    with pytest.raises(ConfigError, match="dino_weights"):
        load_config(None, ["loss_adv=0.25"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid(path: Path) -> None:
    if path.name.startswith("perceptual_"):  # python -m slimdiffsr.training.perceptual
        from slimdiffsr.training.perceptual import PerceptualConfig

        assert load_config(path, cls=PerceptualConfig).max_train_steps > 0
        return
    cfg = load_config(path)
    assert cfg.crop_size % cfg.scale == 0


def _script():
    """training/distill.py as a module (it is a script, not a package member)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_flags_map_to_keys() -> None:
    cfg = _script().parse_args(
        ["--teacher", "t", "--no-mmd", "--resume", "latest", "scale=8", "crop_size=64"]
    )
    assert (
        cfg.teacher == "t"
        and cfg.no_mmd
        and cfg.resume_from_checkpoint == "latest"
        and cfg.scale == 8
    )


def test_yaml_no_off_yes_are_not_booleans_for_strings(tmp_path: Path) -> None:
    """Regression: YAML 1.1 reads ``no`` as False, which failed ``--mixed_precision no`` with
    "mixed_precision must be str, got False"; one loader now reads YAML 1.2 booleans."""
    cfg = _script().parse_args(["--mixed_precision", "no", "mixed_precision=no"])
    assert cfg.mixed_precision == "no"
    f = tmp_path / "c.yaml"
    f.write_text("mixed_precision: no\nno_mmd: off\ncpu: yes\npad_small_images: false\n")
    cfg = load_config(f)
    assert cfg.mixed_precision == "no" and cfg.no_mmd is False and cfg.cpu is True
    assert cfg.pad_small_images is False
    f.write_text("mixed_precision: false\n")  # a YAML 1.1 writer's spelling of no
    assert load_config(f).mixed_precision == "no"
    assert load_config(None, ["no_dis=on", "mixed_precision=bf16"]).no_dis is True
    with pytest.raises(ConfigError, match="mixed_precision must be no, fp16 or bf16"):
        load_config(None, ["mixed_precision=true"])
    with pytest.raises(ConfigError, match="cpu must be bool"):
        load_config(None, ["cpu=maybe"])


# -- sampling and metrics -----------------------------------------------------------------------
def test_step_sampler_resumes_and_shards() -> None:
    from itertools import islice

    from slimdiffsr.training.data import StepSampler

    full = list(islice(iter(StepSampler(5, 2, seed=1)), 12))
    resumed = list(islice(iter(StepSampler(5, 2, seed=1, start_batch=3)), 6))
    assert resumed == full[6:]
    assert sorted(k % 5 for k in full[:5]) == [0, 1, 2, 3, 4]  # an epoch is a permutation
    r0 = list(islice(iter(StepSampler(5, 1, seed=1, rank=0, world=2)), 3))
    r1 = list(islice(iter(StepSampler(5, 1, seed=1, rank=1, world=2)), 3))
    assert [x for pair in zip(r0, r1) for x in pair] == full[:6]


# -- loud early failures ------------------------------------------------------------------------
def test_missing_teacher_fails_before_building(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    from slimdiffsr.training.distill import DistillRun

    cfg = load_config(
        None, _tiny_overrides(tiny_data, tmp_path / "o", teacher=str(tmp_path / "nope"))
    )
    with pytest.raises(FileNotFoundError, match="teacher folder not found"):
        DistillRun(cfg)
    assert not (tmp_path / "o").exists()


def test_existing_checkpoints_are_not_overwritten(
    tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    from slimdiffsr.training.distill import DistillRun

    (tmp_path / "o" / "checkpoint-5").mkdir(parents=True)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        DistillRun(load_config(None, _tiny_overrides(tiny_data, tmp_path / "o")))


def test_empty_dataset_and_too_large_crop_fail(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    from slimdiffsr.data.datasets import DatasetError
    from slimdiffsr.training.distill import DistillRun

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        DistillRun(
            load_config(None, _tiny_overrides(tiny_data, tmp_path / "o", train_data=str(empty)))
        )
    with pytest.raises(DatasetError, match="larger than every image"):
        DistillRun(load_config(None, _tiny_overrides(tiny_data, tmp_path / "o", crop_size=64)))


def test_script_exits_2_with_one_line_on_unknown_key(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "no_such_key=1"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2
    assert "unknown config key 'no_such_key'" in r.stderr and "Traceback" not in r.stderr


# -- real runs --------------------------------------------------------------------------------------
def _model_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_script_runs_and_writes_checkpoints(tiny_data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(SCRIPT), *_tiny_overrides(tiny_data, out, report_to="tensorboard")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-2",
        "checkpoint-3",
    ]
    for ck in ("checkpoint-2", "checkpoint-3"):
        names = {p.name for p in (out / ck).iterdir()}
        assert {"model.safetensors", "optimizer.bin", "slimdiffsr-nano-x4.safetensors"} <= names
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step-0000000.png",
        "step-0000002.png",
        "step-0000003.png",
    ]
    assert list((out / "logs").rglob("events.out.tfevents*"))
    from slimdiffsr.models.card import read_card
    from slimdiffsr.models.registry import load_model

    card = read_card(out / "slimdiffsr-nano-x4.safetensors")
    assert card.training["recipe"].startswith("reconstruction-only") and card.training["steps"] == 3
    assert "psnr_y" in card.metrics
    model = load_model(str(out / "slimdiffsr-nano-x4.safetensors"))
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 32, 32)


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(
    tiny_data: dict[str, Path], tmp_path: Path, one_thread: None
) -> None:
    from slimdiffsr.training.distill import run

    straight = tmp_path / "straight"
    run(load_config(None, _tiny_overrides(tiny_data, straight, max_train_steps=3)))
    stopped = tmp_path / "stopped"
    run(load_config(None, _tiny_overrides(tiny_data, stopped, max_train_steps=2)))
    run(load_config(None, _tiny_overrides(tiny_data, stopped, resume_from_checkpoint="latest")))
    a = _model_tensors(straight / "checkpoint-3" / "model.safetensors")
    b = _model_tensors(stopped / "checkpoint-3" / "model.safetensors")
    c = _model_tensors(straight / "checkpoint-2" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # step 3 did change the weights


@pytest.mark.slow
def test_distillation_with_tiny_teacher(
    tiny_data: dict[str, Path], tmp_path: Path, one_thread: None
) -> None:
    from slimdiffsr.testing import build_tiny_teacher
    from slimdiffsr.training.distill import run

    teacher = build_tiny_teacher(tmp_path).export_merged(
        tmp_path / "teacher"
    )  # stage 1's OUT/teacher
    out = tmp_path / "dis"
    over = _tiny_overrides(
        tiny_data, out, teacher=str(teacher), max_train_steps=2, loss_adv=0.1, discriminator="tiny"
    )
    summary = run(load_config(None, over))
    last = summary["history"][-1]
    assert last["mse"] > 0 and np.isfinite(last["mmd"]) and np.isfinite(last["loss"])
    assert np.isfinite(last["adv_g"]) and np.isfinite(last["adv_d"])
    from slimdiffsr.models.card import read_card

    card = read_card(out / "slimdiffsr-nano-x4.safetensors")
    assert card.training["recipe"] == "distillation" and card.training["teacher"] == str(teacher)
    no_mmd = run(
        load_config(
            None,
            _tiny_overrides(
                tiny_data, tmp_path / "nommd", teacher=str(teacher), max_train_steps=1, no_mmd=True
            ),
        )  # fmt: skip
    )
    assert no_mmd["history"][-1]["mmd"] == 0.0


@pytest.mark.slow
def test_two_process_ddp_on_cpu_keeps_replicas_identical(
    tiny_data: dict[str, Path], tmp_path: Path
) -> None:
    """``accelerate launch`` with two CPU processes (gloo); on a CPU-only machine accelerate needs
    ``--multi_gpu`` to start more than one process."""
    launcher = Path(sys.executable).with_name("accelerate")
    out = tmp_path / "ddp"
    over = _tiny_overrides(tiny_data, out, train_batch_size=1, max_train_steps=2, cpu=True)
    cmd = [
        str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT), *over,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [
        json.loads(x.split(" ", 1)[1]) for x in r.stdout.splitlines() if x.startswith("summary ")
    ]
    assert len(lines) == 1  # printed by the main process only
    assert lines[0]["processes"] == 2 and lines[0]["replicas_identical"] is True
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
