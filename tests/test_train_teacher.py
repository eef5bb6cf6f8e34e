"""Stage 0 and stage 1 training scripts: a few CPU steps on a tiny SD-shaped folder.

The scripts run in-process (``parse_args`` then ``main``) on synthetic crops; one slow test runs
the real command line in a subprocess.
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

from slimdiffsr.models.teacher import TRAINED_WEIGHTS as TRAINED

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_uncertainty = _load("train_uncertainty")
train_teacher = _load("train_teacher")
common = sys.modules["common"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY_DATA = [
    "--set", "data.synthetic=true",
    "--set", "data.crop_size=64",
    "--set", "data.val_crop_size=64",
    "--set", "data.val_max_images=1",
    "--set", "data.num_workers=0",
    "--set", "data.degradation=bicubic",
    "--mixed_precision", "no",
    "--train_batch_size", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    from slimdiffsr.models.teacher import make_sd_folder

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
        "--set", "checkpointing_steps=2",
        "--set", "validation_steps=2",
        "--set", "estimator.hidden_channels=8",
        *TINY_DATA,
        *extra,
    ]  # fmt: skip


def _stage1_args(workdir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model_name_or_path", str(workdir / "sd"),
        "--output_dir", str(out),
        "--max_train_steps", "3",
        "--set", f"estimator_path={workdir / 'u' / 'estimator'}",
        "--set", "checkpointing_steps=2",
        "--set", "validation_steps=2",
        "--set", "discriminator.size=tiny",
        "--set", f"loss.lpips_weights={workdir / 'lpips_alex.pth'}",
        "--set", "loss.lpips_net=alex",
        "--set", "teacher.predictor_hidden=8",
        "--set", "teacher.predictor_blocks=1",
        *TINY_DATA,
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def stage0(workdir) -> dict:
    return train_uncertainty.main(
        train_uncertainty.parse_args(_stage0_args(workdir, workdir / "u"))
    )


@pytest.fixture(scope="module")
def stage1(workdir, stage0) -> dict:
    return train_teacher.main(train_teacher.parse_args(_stage1_args(workdir, workdir / "t")))


# ------------------------------------------------------------------------------------------------
# Stage 0
# ------------------------------------------------------------------------------------------------


def test_stage0_three_steps(stage0, workdir) -> None:
    from slimdiffsr.models.uncertainty import UncertaintyEstimator

    assert stage0["step"] == 3 and len(stage0["losses"]) == 3
    assert all(math.isfinite(v) for v in stage0["losses"])
    assert all(math.isfinite(v) for v in stage0["validation"].values())
    out = workdir / "u"
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-2"}
    ckpt = out / "checkpoint-2"
    for name in (
        "estimator/config.json",
        "optimizer.safetensors",
        "training_state.safetensors",
        "config.yaml",
    ):
        assert (ckpt / name).is_file(), name
    u = UncertaintyEstimator.from_pretrained(out / "estimator")
    assert u.config.hidden_channels == 8


def test_stage0_exact_resume(stage0, workdir, tmp_path) -> None:
    args = _stage0_args(
        workdir, tmp_path, "--resume_from_checkpoint", str(workdir / "u" / "checkpoint-2")
    )
    result = train_uncertainty.main(train_uncertainty.parse_args(args))
    assert result["step"] == 3 and result["losses"] == stage0["losses"][2:]
    a = load_file(str(workdir / "u" / "estimator" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "estimator" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------
# Stage 1
# ------------------------------------------------------------------------------------------------


def test_stage1_three_steps(stage1, workdir) -> None:
    hist = stage1["history"]
    assert stage1["step"] == 3 and len(hist) == 3
    for logs in hist:
        assert {"l2", "lpips", "adversarial", "tv", "disc", "loss", "t"} <= set(logs)
        assert all(math.isfinite(v) for v in logs.values())
    assert all(math.isfinite(v) for v in stage1["validation"].values())
    out = workdir / "t"
    ckpt = out / "checkpoint-2"
    for name in (
        "teacher_lora/teacher_trainable.safetensors",
        "teacher_lora/teacher_config.json",
        "teacher_lora/estimator/config.json",
        "discriminator_heads.safetensors",
        "optimizer_g.safetensors",
        "optimizer_d.safetensors",
        "training_state.safetensors",
        "config.yaml",
    ):
        assert (ckpt / name).is_file(), name
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-000002", "step-000003"]
    assert len((out / "validation.jsonl").read_text().splitlines()) == 2


def test_stage1_checkpoint_holds_only_trainable_weights(stage1, workdir) -> None:
    state = load_file(str(workdir / "t" / "checkpoint-2" / "teacher_lora" / TRAINED))
    assert state and all(".lora_" in k or k.startswith("predictor.") for k in state)
    heads = load_file(str(workdir / "t" / "checkpoint-2" / "discriminator_heads.safetensors"))
    assert heads and not any(k.startswith("backbone.") for k in heads)


def test_stage1_outputs_load(stage1, workdir) -> None:
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


def test_stage1_exact_resume(stage1, workdir, tmp_path) -> None:
    args = _stage1_args(
        workdir,
        tmp_path,
        "--resume_from_checkpoint", str(workdir / "t" / "checkpoint-2"),
        "--set", "export_merged=false",
        "--set", "data.val_max_images=0",
    )  # fmt: skip
    result = train_teacher.main(train_teacher.parse_args(args))
    assert result["step"] == 3 and result["history"] == stage1["history"][2:]
    for name in (f"teacher_lora/{TRAINED}", "discriminator_heads.safetensors"):
        a, b = load_file(str(workdir / "t" / name)), load_file(str(tmp_path / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_fixed_timestep_ablation_needs_no_estimator(workdir, tmp_path) -> None:
    args = [
        "--pretrained_model_name_or_path", str(workdir / "sd"),
        "--output_dir", str(tmp_path),
        "--max_train_steps", "2",
        "--set", "teacher.timestep_mode=fixed",
        "--set", "loss.lpips=0",
        "--set", "loss.adversarial=0",
        "--set", "checkpointing_steps=0",
        "--set", "export_merged=false",
        *TINY_DATA,
    ]  # fmt: skip
    result = train_teacher.main(train_teacher.parse_args(args))
    assert [h["t"] for h in result["history"]] == [999.0, 999.0]
    assert all(math.isfinite(h["loss"]) for h in result["history"])
    state = load_file(str(tmp_path / "teacher_lora" / TRAINED))
    assert state and all(".lora_" in k for k in state)


# ------------------------------------------------------------------------------------------------
# Config and checkpoint plumbing
# ------------------------------------------------------------------------------------------------


def test_unknown_keys_fail(workdir, tmp_path, capsys) -> None:
    base = [
        "--pretrained_model_name_or_path",
        str(workdir / "sd"),
        "--set",
        "teacher.timestep_mode=fixed",
    ]
    with pytest.raises(SystemExit):
        train_teacher.parse_args([*base, "--set", "teacher.rank=4"])
    assert "teacher.rank" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loss:\n  lpips_wieght: 1.0\n")
    with pytest.raises(SystemExit):
        train_teacher.parse_args([*base, "--config", str(cfg)])
    assert "loss.lpips_wieght" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_uncertainty.parse_args([*base[:2], "--set", "estimator.width=3"])
    with pytest.raises(SystemExit):  # adaptive mode without an estimator
        train_teacher.parse_args(base[:2])


def test_config_file_and_flags_merge(workdir, tmp_path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 1.0e-3\nteacher:\n  spatial_timestep: true\n")
    args = [
        "--config",
        str(cfg),
        "--pretrained_model_name_or_path",
        "x",
        "--set",
        "estimator_path=y",
    ]
    out = train_teacher.parse_args([*args, "--learning_rate", "5e-4"])
    assert out["learning_rate"] == 5e-4 and out["teacher"]["spatial_timestep"] is True
    assert out["teacher"]["unet_lora_rank"] == 32 and out["loss"]["lpips"] == 2.5


def test_defaults_are_the_papers() -> None:
    d = train_teacher.DEFAULTS
    assert (d["learning_rate"], d["train_batch_size"], d["max_train_steps"]) == (2e-4, 2, 25000)
    assert (d["adam_weight_decay"], d["max_grad_norm"], d["mixed_precision"]) == (0.01, 1.0, "bf16")
    assert d["loss"] == {**d["loss"], "l2": 1.0, "lpips": 2.5, "adversarial": 0.25, "tv": 0.1}
    assert (d["teacher"]["unet_lora_rank"], d["teacher"]["vae_lora_rank"]) == (32, 16)
    u = train_uncertainty.DEFAULTS
    assert (u["learning_rate"], u["train_batch_size"], u["max_train_steps"]) == (1e-4, 16, 20000)


def test_optimizer_state_round_trip(tmp_path) -> None:
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01)
    for _ in range(2):
        p.grad = torch.randn_like(p)
        opt.step()
    common.save_optimizer(opt, tmp_path / "o.safetensors")
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = torch.optim.AdamW([q], lr=5.0)
    common.load_optimizer(opt2, tmp_path / "o.safetensors")
    assert opt2.param_groups[0]["lr"] == 1e-3
    g = torch.randn_like(p)
    p.grad, q.grad = g, g.clone()
    opt.step()
    opt2.step()
    assert torch.equal(p, q)


def test_checkpoint_rotation_and_latest(tmp_path) -> None:
    for s in (5, 10, 100):
        (tmp_path / f"checkpoint-{s}").mkdir()
    (tmp_path / "checkpoint-old").mkdir()
    assert common.resolve_checkpoint(tmp_path, "latest").name == "checkpoint-100"
    common.rotate_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == [
        "checkpoint-10",
        "checkpoint-100",
        "checkpoint-old",
    ]
    assert common.resolve_checkpoint(tmp_path, None) is None
    with pytest.raises(FileNotFoundError):
        common.resolve_checkpoint(tmp_path, str(tmp_path / "nope"))


def test_batches_are_a_function_of_step() -> None:
    data = {**common.DATA_DEFAULTS, "synthetic": True, "crop_size": 16, "num_workers": 0}
    full = list(common.build_train_loader(data, 0, 4, 0, 5))
    tail = list(common.build_train_loader(data, 0, 4, 3, 5))
    assert len(full) == 5 and len(tail) == 2
    assert all(torch.equal(a, b) for a, b in zip(full[3:], tail))


@pytest.mark.slow
def test_benchmark_mode_on_cpu(tmp_path) -> None:
    args = [
        "--benchmark",
        "--output_dir", str(tmp_path),
        "--set", "random_init=tiny",
        "--set", "mixed_precision=no",
        "--set", "max_train_steps=2",
        "--set", "data.crop_size=64",
        "--set", "data.num_workers=0",
        "--set", "discriminator.size=tiny",
        "--set", "loss.lpips_net=alex",
    ]  # fmt: skip
    result = train_teacher.main(train_teacher.parse_args(args))
    bench = result["benchmark"]
    assert bench["steps"] == 2 and bench["steps_per_s"] > 0
    assert (tmp_path / "benchmark.json").is_file()


@pytest.mark.slow
def test_command_line_subprocess(workdir, stage0, tmp_path) -> None:
    cmd = [sys.executable, str(TRAINING / "train_teacher.py"), *_stage1_args(workdir, tmp_path)]
    cmd += ["--max_train_steps", "1", "--set", "export_merged=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "teacher_lora" / TRAINED).is_file()
