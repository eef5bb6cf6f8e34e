"""Stage 0 and stage 1 training: a few CPU steps on a tiny SD-shaped folder, exact resume.

The scripts run in-process (``parse_args`` then the core ``run``) on synthetic crops; one slow
test runs the real command line in a subprocess.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slimdiffsr.models.sd_folder import TRAINED_WEIGHTS as TRAINED
from slimdiffsr.training import teacher as stage1
from slimdiffsr.training import uncertainty as stage0

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_uncertainty = _load("train_uncertainty")
train_teacher = _load("train_teacher")

TINY_DATA = [
    "synthetic_data=true",
    "crop_size=64",
    "val_crop_size=64",
    "val_max_images=1",
    "degradation=bicubic",
    "report_to=none",
    "--mixed_precision", "no",
    "--train_batch_size", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    from slimdiffsr.testing import make_sd_folder

    d = tmp_path_factory.mktemp("train")
    make_sd_folder(d / "sd", "tiny")
    import lpips

    net = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False)
    torch.save(net.state_dict(), d / "lpips_alex.pth")
    return d


def _stage0_args(workdir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model_name_or_path", str(workdir / "sd"),
        "--output_dir", str(out),
        "--max_train_steps", "3",
        "checkpointing_steps=2",
        "validation_steps=2",
        "estimator.hidden_channels=8",
        *TINY_DATA,
        *extra,
    ]  # fmt: skip


def _stage1_args(workdir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model_name_or_path", str(workdir / "sd"),
        "--output_dir", str(out),
        "--max_train_steps", "3",
        f"estimator_path={workdir / 'u' / 'estimator'}",
        "checkpointing_steps=2",
        "validation_steps=2",
        "discriminator=tiny",
        f"lpips_weights={workdir / 'lpips_alex.pth'}",
        "lpips_net=alex",
        "--set", "teacher_config.predictor_hidden=8",
        "--set", "teacher_config.predictor_blocks=1",
        *TINY_DATA,
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def stage0_run(workdir) -> dict:
    return stage0.run(train_uncertainty.parse_args(_stage0_args(workdir, workdir / "u")))


@pytest.fixture(scope="module")
def stage1_run(workdir, stage0_run) -> dict:
    return stage1.run(train_teacher.parse_args(_stage1_args(workdir, workdir / "t")))


def _same_tensors(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# ------------------------------------------------------------------------------------------------
# Stage 0
# ------------------------------------------------------------------------------------------------


def test_stage0_three_steps(stage0_run, workdir) -> None:
    from slimdiffsr.models.uncertainty import UncertaintyEstimator

    losses = [h["loss"] for h in stage0_run["history"]]
    assert stage0_run["step"] == 3 and len(losses) == 3
    assert all(math.isfinite(v) for v in losses)
    assert [v["step"] for v in stage0_run["validation"]] == [2, 3]
    assert all(math.isfinite(v) for v in stage0_run["validation"][-1].values())
    out = workdir / "u"
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-3"}
    for name in ("estimator/config.json", "model.safetensors", "optimizer.bin", "config.yaml"):
        assert (out / "checkpoint-2" / name).is_file() or (out / name).is_file(), name
    u = UncertaintyEstimator.from_pretrained(out / "estimator")
    assert u.config.hidden_channels == 8


def test_stage0_exact_resume(stage0_run, workdir, tmp_path) -> None:
    args = _stage0_args(
        workdir, tmp_path, "--resume_from_checkpoint", str(workdir / "u" / "checkpoint-2")
    )
    result = stage0.run(train_uncertainty.parse_args(args))
    assert result["step"] == 3 and result["history"] == stage0_run["history"][2:]
    name = "estimator/diffusion_pytorch_model.safetensors"
    assert _same_tensors(workdir / "u" / name, tmp_path / name)


# ------------------------------------------------------------------------------------------------
# Stage 1
# ------------------------------------------------------------------------------------------------


def test_stage1_three_steps(stage1_run, workdir) -> None:
    hist = stage1_run["history"]
    assert stage1_run["step"] == 3 and len(hist) == 3
    for logs in hist:
        assert {"l2", "lpips", "adversarial", "tv", "disc", "loss", "t"} <= set(logs)
        assert all(math.isfinite(v) for v in logs.values())
    val = stage1_run["validation"][-1]
    assert {"val/psnr_y", "val/psnr_y_bicubic", "val/lpips", "val/t"} <= set(val)
    assert all(math.isfinite(v) for v in val.values())
    out = workdir / "t"
    ckpt = out / "checkpoint-2"
    for name in (
        "teacher_lora/teacher_trainable.safetensors",
        "teacher_lora/teacher_config.json",
        "teacher_lora/estimator/config.json",
        "model.safetensors",
        "model_1.safetensors",
        "optimizer.bin",
        "optimizer_1.bin",
        "custom_checkpoint_0.pkl",
    ):
        assert (ckpt / name).is_file(), name
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step-0000002.png",
        "step-0000003.png",
    ]
    assert len((out / "validation.jsonl").read_text().splitlines()) == 2


def test_stage1_checkpoint_holds_only_trainable_weights(stage1_run, workdir) -> None:
    """Like diffusers' LoRA scripts: no frozen SD or DINO weights in a checkpoint."""
    teacher = load_file(str(workdir / "t" / "checkpoint-2" / "model.safetensors"))
    assert teacher and all(".lora_" in k or k.startswith("predictor.") for k in teacher)
    assert teacher.keys() == load_file(str(workdir / "t" / "teacher_lora" / TRAINED)).keys()
    heads = load_file(str(workdir / "t" / "checkpoint-2" / "model_1.safetensors"))
    assert heads and not any(k.startswith("backbone.") for k in heads)


def test_stage1_outputs_load(stage1_run, workdir) -> None:
    from slimdiffsr.models.teacher import SlimDiffSRTeacher

    out = workdir / "t"
    t = SlimDiffSRTeacher.from_trained(out / "teacher_lora", workdir / "sd")
    saved = load_file(str(out / "teacher_lora" / TRAINED))
    assert all(torch.equal(saved[k], v) for k, v in t.trainable_state_dict().items())
    merged = SlimDiffSRTeacher.from_trained(out / "teacher")  # complete, LoRA merged
    assert merged.config.lora_merged
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(merged(lr).image, t(lr).image, atol=1e-3, rtol=1e-3)


def test_stage1_exact_resume(stage1_run, workdir, tmp_path) -> None:
    """A run resumed from checkpoint-2 takes exactly the uninterrupted run's third step."""
    args = _stage1_args(
        workdir,
        tmp_path,
        "--resume_from_checkpoint", str(workdir / "t" / "checkpoint-2"),
        "export_merged=false",
        "val_max_images=0",
    )  # fmt: skip
    result = stage1.run(train_teacher.parse_args(args))
    assert result["step"] == 3 and result["history"] == stage1_run["history"][2:]
    assert _same_tensors(
        workdir / "t" / "teacher_lora" / TRAINED, tmp_path / "teacher_lora" / TRAINED
    )
    a, b = workdir / "t" / "checkpoint-3", tmp_path / "checkpoint-3"
    assert _same_tensors(a / "model_1.safetensors", b / "model_1.safetensors")  # D heads
    assert not _same_tensors(
        a / "model.safetensors", workdir / "t" / "checkpoint-2" / "model.safetensors"
    )


def test_fixed_timestep_ablation_needs_no_estimator(workdir, tmp_path) -> None:
    args = [
        "--pretrained_model_name_or_path", str(workdir / "sd"),
        "--output_dir", str(tmp_path),
        "--max_train_steps", "2",
        "teacher_config.timestep_mode=fixed",
        "loss_lpips=0",
        "loss_adv=0",
        "checkpointing_steps=0",
        "export_merged=false",
        *TINY_DATA,
    ]  # fmt: skip
    result = stage1.run(train_teacher.parse_args(args))
    assert [h["t"] for h in result["history"]] == [999.0, 999.0]
    assert all(math.isfinite(h["loss"]) for h in result["history"])
    state = load_file(str(tmp_path / "teacher_lora" / TRAINED))
    assert state and all(".lora_" in k for k in state)
    assert not list(tmp_path.glob("checkpoint-*"))


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------


def test_unknown_keys_fail(workdir, tmp_path, capsys) -> None:
    base = ["--pretrained_model_name_or_path", str(workdir / "sd"), "teacher_config.timestep_mode=fixed"]  # fmt: skip
    with pytest.raises(SystemExit):
        train_teacher.parse_args([*base, "teacher_config.rank=4"])
    assert "teacher_config.rank" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loss_lpips_wieght: 1.0\n")
    with pytest.raises(SystemExit):
        train_teacher.parse_args([*base, "--config", str(cfg)])
    assert "did you mean loss_lpips" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_uncertainty.parse_args([*base[:2], "estimator.width=3"])
    assert "estimator.width" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # adaptive mode without an estimator
        train_teacher.parse_args(base[:2])
    assert "estimator_path" in capsys.readouterr().err


def test_config_file_and_flags_merge(tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "learning_rate: 1.0e-3\nmixed_precision: no\nteacher_config:\n  spatial_timestep: yes\n"
    )
    args = ["--config", str(cfg), "--pretrained_model_name_or_path", "x", "estimator_path=y",
            "lpips_weights=l.pth", "dino_weights=d.pth"]  # fmt: skip
    out = train_teacher.parse_args([*args, "--learning_rate", "5e-4"])
    assert out.learning_rate == 5e-4 and out.mixed_precision == "no"
    assert out.teacher_config["spatial_timestep"] is True  # merged into the defaults
    assert out.teacher_config["unet_lora_rank"] == 32 and out.loss_lpips == 2.5
    assert out.teacher_model_config().spatial_timestep


def test_defaults_are_the_papers() -> None:
    d = stage1.TeacherTrainConfig()
    assert (d.learning_rate, d.train_batch_size, d.max_train_steps) == (2e-4, 2, 25000)
    assert (d.adam_weight_decay, d.max_grad_norm, d.mixed_precision) == (0.01, 1.0, "bf16")
    assert (d.loss_l2, d.loss_lpips, d.loss_adv, d.loss_tv) == (1.0, 2.5, 0.25, 0.1)
    assert (d.teacher_config["unet_lora_rank"], d.teacher_config["vae_lora_rank"]) == (32, 16)
    u = stage0.UncertaintyTrainConfig()
    assert (u.learning_rate, u.train_batch_size, u.max_train_steps) == (1e-4, 16, 20000)


def test_checkpoint_rotation_and_latest(tmp_path) -> None:
    from slimdiffsr.training.config import TrainConfig
    from slimdiffsr.training.loop import list_checkpoints, resume_path, rotate_checkpoints

    for s in (5, 10, 100):
        (tmp_path / f"checkpoint-{s}").mkdir()
    (tmp_path / "checkpoint-old").mkdir()
    cfg = TrainConfig(output_dir=str(tmp_path), resume_from_checkpoint="latest")
    assert resume_path(cfg).name == "checkpoint-100"
    rotate_checkpoints(tmp_path, 2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-100"]
    assert (tmp_path / "checkpoint-old").is_dir()
    assert resume_path(TrainConfig(output_dir=str(tmp_path))) is None


def test_batches_are_a_function_of_step() -> None:
    from slimdiffsr.training.config import TrainConfig
    from slimdiffsr.training.data import build_train_set, step_batches

    cfg = TrainConfig(synthetic_data=True, crop_size=16, train_batch_size=4)
    data = build_train_set(cfg)
    full = [next(it) for it in [step_batches(data, cfg, 0, 1, 0)] for _ in range(5)]
    tail = [next(it) for it in [step_batches(data, cfg, 0, 1, 3)] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(full[3:], tail))
    assert not torch.equal(full[0], full[1])


@pytest.mark.slow
def test_benchmark_mode_on_cpu(tmp_path) -> None:
    args = [
        "--benchmark",
        "--output_dir", str(tmp_path),
        "random_init=tiny",
        "mixed_precision=no",
        "max_train_steps=2",
        "crop_size=64",
        "dataloader_num_workers=0",
        "discriminator=tiny",
        "lpips_net=alex",
    ]  # fmt: skip
    cfg = train_teacher.parse_args(args)
    assert cfg.benchmark and cfg.random_init == "tiny" and cfg.mixed_precision == "no"
    stage1.run(cfg)
    import json

    bench = json.loads((tmp_path / "benchmark.json").read_text())
    assert bench["steps"] == 2 and bench["steps_per_s"] > 0


@pytest.mark.slow
def test_command_line_subprocess(workdir, stage0_run, tmp_path) -> None:
    cmd = [sys.executable, str(TRAINING / "train_teacher.py"), *_stage1_args(workdir, tmp_path)]
    cmd += ["--max_train_steps", "1", "export_merged=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "teacher_lora" / TRAINED).is_file()
