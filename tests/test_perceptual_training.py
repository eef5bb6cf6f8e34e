"""slimdiffsr.training.perceptual on the shared stack: config keys, the cached-crop stream, the real
command line writing a loadable model file, and exact resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimdiffsr.training.config import ConfigError, load_config
from slimdiffsr.training.perceptual import PerceptualConfig, draw_batch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training" / "configs" / "perceptual_nano_x4.yaml"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A crop set in teacher_cache's format (float16 hr/lr/teacher in [0, 1], trunk features at
    HR/8, recipe metadata) and a tiny student saved through the product's save API, as the init."""
    from safetensors.torch import save_file

    from slimdiffsr.data.teacher_cache import FEATURES
    from slimdiffsr.models.student import SlimDiffSRStudent

    d = tmp_path_factory.mktemp("perceptual")
    g = torch.Generator().manual_seed(0)
    low = torch.rand(6, 3, 6, 6, generator=g)
    hr = torch.nn.functional.interpolate(low, size=(48, 48), mode="bilinear").clamp(0, 1)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    teacher = (hr + 0.05 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    meta = {
        "data": "synthetic", "teacher": "realesrgan_x4plus.safetensors", "n": "6",
        "crop_size": "48", "scale": "4", "degradation": "rs", "seed": "0", "features": FEATURES,
    }  # fmt: skip
    feat = torch.randn(6, 64, 6, 6, generator=g)
    tensors = {
        "hr": hr.half(),
        "lr": lr.half(),
        "teacher": teacher.half(),
        "teacher_feat": feat.half(),
    }
    save_file(tensors, str(d / "cache.safetensors"), metadata=meta)
    torch.manual_seed(0)
    student = SlimDiffSRStudent.from_preset(
        "nano", block_out_channels=(16, 32, 32, 32), norm_num_groups=8, ae_channels=16,
        num_queries=8, qgam_dim=16,
    )  # fmt: skip
    init = student.save_model(d / "tiny-init.safetensors", card=student.make_card("tiny-init"))
    return {"cache": d / "cache.safetensors", "init": init}


def _overrides(files: dict[str, Path], out: Path, **extra: object) -> list[str]:
    values = {
        "cache": files["cache"], "init": files["init"], "output_dir": out, "crop_size": 32,
        "train_batch_size": 2, "max_train_steps": 2, "checkpointing_steps": 1, "w_lpips": 0,
        "report_to": "none", "model_name": "tiny-perceptual", **extra,
    }  # fmt: skip
    return [f"{k}={v}" for k, v in values.items()]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


# -- configuration and data ---------------------------------------------------------------------
def test_shipped_config_uses_the_shared_keys() -> None:
    from slimdiffsr.models.card import read_card

    cfg = load_config(CONFIG, ["cache=C", "lpips_weights=W"], PerceptualConfig)
    assert cfg.output_dir == "/work/runs/perceptual_nano_x4" and cfg.clip_discriminator is False
    # the config is the recipe of the shipped model: its card says what it was trained with
    shipped = read_card(ROOT / "core/slimdiffsr/zoo/slimdiffsr-nano-x4-perceptual.safetensors")
    t = shipped.training
    assert (cfg.learning_rate, cfg.train_batch_size, cfg.crop_size, cfg.max_train_steps) == (
        t["learning_rate"], t["batch_size"], t["crop_size"], t["steps"]
    )  # fmt: skip
    weights = {"teacher_l1": cfg.w_teacher, "l1": cfg.w_l1, "lpips_alex": cfg.w_lpips,
               "consistency": cfg.w_consistency, "adversarial_patchgan": cfg.w_adv,
               "feature_mse_mmd": cfg.w_feature}  # fmt: skip
    assert t["losses"] == weights
    with pytest.raises(ConfigError, match="unknown config key 'steps'"):
        load_config(None, ["steps=10"], PerceptualConfig)
    with pytest.raises(ConfigError, match="w_adv must be >= 0"):
        load_config(None, ["w_adv=-1"], PerceptualConfig)


def test_batches_are_a_pure_function_of_the_micro_step(files: dict[str, Path]) -> None:
    from slimdiffsr.training.perceptual import load_crop_set

    crops, meta = load_crop_set(files["cache"])
    assert meta["scale"] == "4"
    cfg = load_config(None, ["crop_size=32", "train_batch_size=2", "seed=3"], PerceptualConfig)
    a, b = draw_batch(crops, 5, cfg), draw_batch(crops, 5, cfg)
    assert a.hr.shape == (2, 3, 32, 32) and a.lr.shape == (2, 3, 8, 8)
    assert all(torch.equal(x, y) for x, y in zip((a.hr, a.lr, a.teacher), (b.hr, b.lr, b.teacher)))
    assert float(a.hr.min()) >= -1 and float(a.hr.max()) <= 1
    other = draw_batch(crops, 6, cfg)
    assert not torch.equal(a.hr, other.hr)
    # two ranks take the two halves of one global draw
    double = load_config(None, ["crop_size=32", "train_batch_size=4", "seed=3"], PerceptualConfig)
    whole = draw_batch(crops, 5, double)
    halves = [draw_batch(crops, 5, cfg, rank=r, world=2) for r in (0, 1)]
    assert torch.equal(torch.cat([h.lr for h in halves]), whole.lr)


def test_missing_cache_fails_before_writing(files: dict[str, Path], tmp_path: Path) -> None:
    from slimdiffsr.training.perceptual import PerceptualRun

    over = _overrides(files, tmp_path / "o", cache=tmp_path / "none.safetensors")
    with pytest.raises(FileNotFoundError, match="cache file not found"):
        PerceptualRun(load_config(None, over, PerceptualConfig))
    assert not (tmp_path / "o").exists()


def test_only_the_student_is_clipped_by_default(
    files: dict[str, Path], tmp_path: Path, one_thread: None
) -> None:
    from slimdiffsr.training.perceptual import PerceptualRun

    run = PerceptualRun(load_config(None, _overrides(files, tmp_path / "a"), PerceptualConfig))
    (_, student_params), (_, disc_params) = run.optimizers
    assert student_params and disc_params == []
    over = _overrides(files, tmp_path / "b", clip_discriminator="true")
    run = PerceptualRun(load_config(None, over, PerceptualConfig))
    assert len(run.optimizers[1][1]) == len(list(run.disc.parameters()))


# -- real runs ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_command_writes_a_loadable_model_with_card(files: dict[str, Path], tmp_path: Path) -> None:
    """The shipped model card's command, on the tiny files (LPIPS AlexNet when provisioned)."""
    from slimdiffsr.models.card import read_card
    from slimdiffsr.models.registry import load_model
    from slimdiffsr.weights import weights_dir

    out = tmp_path / "run"
    lpips = weights_dir() / "lpips_alex.safetensors"
    over = _overrides(files, out, w_lpips=1.0 if lpips.is_file() else 0)
    cmd = [sys.executable, "-m", "slimdiffsr.training.perceptual", "--config", str(CONFIG),
           *over, f"lpips_weights={lpips}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    final = out / "tiny-perceptual.safetensors"
    assert f"model written to {final}" in r.stdout
    for folder in (out / "checkpoint-1", out / "checkpoint-2", out):
        assert (folder / "tiny-perceptual.safetensors").is_file()
        assert (folder / "history.json").is_file()
    for name in ("model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin"):
        assert (out / "checkpoint-2" / name).is_file()  # student and PatchGAN, both optimizers
    card = read_card(final)
    t = card.training
    assert t["steps"] == 2 and t["init"] == "tiny-init.safetensors"
    assert t["crop_set"]["n"] == "6" and t["crop_size"] == 32 and t["batch_size"] == 2
    assert t["learning_rate"] == 2e-4 and t["losses"]["adversarial_patchgan"] == 0.02
    model = load_model(str(final))
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def _assert_resume_exact(
    files: dict[str, Path], straight: Path, stopped: Path, **extra: object
) -> dict:
    """2 steps straight vs 1 step + resume: identical step-2 losses and bit-identical student,
    discriminator and model file; returns the straight run's summary."""
    from slimdiffsr.training.perceptual import run

    summary = run(load_config(None, _overrides(files, straight, **extra), PerceptualConfig))
    run(load_config(None, _overrides(files, stopped, max_train_steps=1, **extra), PerceptualConfig))
    over = _overrides(files, stopped, resume_from_checkpoint="latest", **extra)
    resumed = run(load_config(None, over, PerceptualConfig))
    assert resumed["history"][-1] == summary["history"][-1]  # identical losses at step 2
    for name in ("model.safetensors", "model_1.safetensors", "tiny-perceptual.safetensors"):
        a = _tensors(straight / "checkpoint-2" / name)
        b = _tensors(stopped / "checkpoint-2" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    return summary


def test_resume_matches_uninterrupted_run(
    files: dict[str, Path], tmp_path: Path, one_thread: None
) -> None:

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    summary = _assert_resume_exact(files, straight, stopped)
    assert {"teacher", "l1", "consistency", "adv_g", "adv_d"} <= set(summary["history"][-1])
    a = _tensors(straight / "tiny-perceptual.safetensors")
    c = _tensors(straight / "checkpoint-1" / "tiny-perceptual.safetensors")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # step 2 did change the weights


# -- feature distillation -------------------------------------------------------------------------
def test_feature_crops_stay_on_the_hr8_grid(files: dict[str, Path]) -> None:
    """Features that are the LR pooled by 2 must still be the pooled LR after sub-crop and flip:
    an odd LR offset or a feature crop out of step with the LR breaks that."""
    from slimdiffsr.training.perceptual import load_crop_set

    crops, _ = load_crop_set(files["cache"])
    lr = crops["lr"].float() * 2 - 1  # (6, 3, 12, 12)
    crops = {**crops, "teacher_feat": torch.nn.functional.avg_pool2d(lr, 2).repeat(1, 2, 1, 1)}
    offsets, flipped = set(), set()
    for seed in (0, 1):
        on = load_config(None, ["crop_size=24", "w_feature=0.5", f"seed={seed}"], PerceptualConfig)
        off = load_config(None, ["crop_size=24", f"seed={seed}"], PerceptualConfig)
        for micro in range(10):
            b = draw_batch(crops, micro, on)
            assert b.lr.shape == (4, 3, 6, 6) and b.feat.shape == (4, 6, 3, 3)
            pooled = torch.nn.functional.avg_pool2d(b.lr, 2).repeat(1, 2, 1, 1)
            assert torch.allclose(b.feat, pooled, atol=1e-6)
            assert draw_batch(crops, micro, off).feat is None
            found = [
                (r, c, f)
                for f in (False, True)
                for r in range(7)
                for c in range(7)
                if any(
                    torch.equal((x.flip(-1) if f else x)[..., r : r + 6, c : c + 6], b.lr[0])
                    for x in lr
                )
            ]
            assert found, "the LR sub-crop is not a crop of the cached LR"
            r, c, f = found[0]
            offsets.add((r, c))
            flipped.add(f)
    assert all(r % 2 == 0 and c % 2 == 0 for r, c in offsets)  # on the HR/8 grid
    assert len(offsets) > 2 and flipped == {False, True}  # the draws did move and flip


def test_feature_term_needs_cached_features_on_the_hr8_grid(
    files: dict[str, Path], tmp_path: Path, one_thread: None
) -> None:
    from safetensors.torch import save_file

    from slimdiffsr.training.perceptual import PerceptualRun

    tensors = {k: v for k, v in _tensors(files["cache"]).items() if k != "teacher_feat"}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={"scale": "4"})
    over = _overrides(files, tmp_path / "a", cache=tmp_path / "old.safetensors", w_feature=0.5)
    with pytest.raises(ConfigError, match="has no teacher_feat"):
        PerceptualRun(load_config(None, over, PerceptualConfig))
    # the old cache still trains without the feature term
    old = PerceptualRun(load_config(None, over[:-1], PerceptualConfig))
    assert old.cfg.w_feature == 0
    # a valid one: the adapter trains with the student, but only the student's grads are clipped
    run = PerceptualRun(
        load_config(None, _overrides(files, tmp_path / "c", w_feature=0.5), PerceptualConfig)
    )
    a, b = old.disc.state_dict(), run.disc.state_dict()  # the adapter draws no random numbers
    assert all(torch.equal(a[k], b[k]) for k in a)
    (opt, clipped), _ = run.optimizers
    adapter = list(run.student.adapters.parameters())
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert adapter and all(id(p) in trained for p in adapter)
    assert clipped and not {id(p) for p in adapter} & {id(p) for p in clipped}
    over = _overrides(files, tmp_path / "b", w_feature=0.5, feature_level="mid")
    with pytest.raises(ConfigError, match="'mid' is 3x3 .* levels on that grid: up0, up1"):
        PerceptualRun(load_config(None, over, PerceptualConfig))
    with pytest.raises(ConfigError, match="multiple of 8"):
        load_config(None, ["w_feature=0.5", "crop_size=36"], PerceptualConfig)
    with pytest.raises(ConfigError, match="feature_level must be one of"):
        load_config(None, ["feature_level=up2"], PerceptualConfig)


def test_feature_term_trains_the_adapter_and_resumes_exactly(
    files: dict[str, Path], tmp_path: Path, one_thread: None
) -> None:
    from slimdiffsr.models.card import read_card
    from slimdiffsr.training.perceptual import run

    straight, stopped, plain = tmp_path / "straight", tmp_path / "stopped", tmp_path / "plain"
    feat = {"w_feature": 0.5, "mmd_tokens": 16}  # 6x6 = 36 positions per image: subsampled
    summary = _assert_resume_exact(files, straight, stopped, **feat)
    for rec in summary["history"]:
        assert {"feature_mse", "feature_mmd"} <= set(rec)
        assert all(torch.isfinite(torch.tensor(rec[k])) for k in ("feature_mse", "feature_mmd"))
        assert rec["feature_mse"] > 0
    # the adapter is checkpointed and trained (it starts at zero) but not in the model file
    state = _tensors(straight / "checkpoint-2" / "model.safetensors")
    assert state["adapters.adapters.0.weight"].shape == (64, 16, 1, 1)
    assert float(state["adapters.adapters.0.weight"].abs().max()) > 0
    run(load_config(None, _overrides(files, plain, max_train_steps=1), PerceptualConfig))
    model = _tensors(straight / "tiny-perceptual.safetensors")
    assert model.keys() == _tensors(plain / "tiny-perceptual.safetensors").keys()
    t = read_card(straight / "tiny-perceptual.safetensors").training
    assert t["losses"]["feature_mse_mmd"] == 0.5
    fd = t["feature_distillation"]
    assert fd["student_level"] == "up1" and fd["teacher_features"] == "rrdb_trunk_avgpool2"
    assert (fd["weight"], fd["lambda_mmd"], fd["mmd_tokens"]) == (0.5, 1.0, 16)
    assert "feature_distillation" not in read_card(plain / "tiny-perceptual.safetensors").training


def test_shipped_config_distils_features() -> None:
    cfg = load_config(CONFIG, ["cache=C", "lpips_weights=W"], PerceptualConfig)
    assert (cfg.w_feature, cfg.feature_level, cfg.lambda_mmd) == (0.5, "up1", 1.0)
