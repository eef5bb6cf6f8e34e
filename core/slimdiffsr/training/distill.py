"""Stage 2: train the student, with feature distillation from a frozen teacher (method.md section 5)
or, without a teacher, on reconstruction losses only (the shipped default, method.md section 10).

One optimisation step, per micro-batch: HR crops in [0, 1] -> :func:`degrade` on the device with a
generator seeded by ``(seed, micro-batch, rank)`` -> both mapped to [-1, 1] -> student (and, when
distilling, its five features through 1x1 adapters) -> ``L_rec + lambda_dis (L_mse + lambda_mmd
L_mmd)`` -> Adam with gradient clipping. The loop, checkpoints (Accelerate state plus the student
as a product model file), exact resume and logging are :class:`~slimdiffsr.training.loop.StageRun`'s,
shared with the teacher stages.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimdiffsr.contract import ValueContract
from slimdiffsr.data.datasets import find_images
from slimdiffsr.data.degradation import DegradationConfig
from slimdiffsr.losses.adversarial import discriminator_loss, generator_loss
from slimdiffsr.losses.distill import FeatureAdapters, distillation_loss
from slimdiffsr.losses.reconstruction import LPIPSLoss, l1_loss, l2_loss
from slimdiffsr.training.config import ConfigError, DistillConfig
from slimdiffsr.training.data import (
    build_val_pairs,
    degrade_batch,
    seed_for,
    train_and_val_sources,
    value_contract,
)
from slimdiffsr.training.loop import StageRun, freeze_unused, frozen_discriminator

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
class DistillModule(nn.Module):
    """Student plus feature adapters, one module so DDP synchronises both.

    ``forward(lr, features)`` returns ``(sr, adapted features or None)``.
    """

    def __init__(self, student: nn.Module, adapters: FeatureAdapters | None = None) -> None:
        super().__init__()
        self.student = student
        self.adapters = adapters

    def forward(
        self, lr: torch.Tensor, features: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if not features:
            return self.student(lr), None
        sr, feats = self.student.forward_features(lr)
        return sr, self.adapters(feats) if self.adapters is not None else list(feats)


def load_teacher(path: str | Path, scale: int, dtype: torch.dtype | None = None) -> nn.Module:
    """A frozen stage-1 teacher for distillation: ``SlimDiffSRTeacher.from_trained`` on a complete
    teacher folder (``train_teacher.py`` writes ``OUT/teacher``), checked against the run's scale."""
    from slimdiffsr.models.teacher import SlimDiffSRTeacher

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"teacher folder not found: {folder}")
    teacher = SlimDiffSRTeacher.from_trained(folder, torch_dtype=dtype)
    if teacher.config.scale != scale:
        raise ConfigError(f"teacher {folder} is x{teacher.config.scale}, the run is x{scale}")
    if dtype is not None:
        teacher.to(dtype)
    return teacher.eval().requires_grad_(False)


def _init_autoencoder(student: nn.Module, folder: str | Path) -> int:
    """Copy TAESD-family layers from ``folder`` and keep the residual start at exact bicubic."""
    from slimdiffsr.models.tiny_ae import load_taesd_layers

    folder = Path(folder)
    enc = sorted(folder.glob("*encoder*.pth"))
    dec = sorted(folder.glob("*decoder*.pth"))
    if not enc or not dec:
        raise FileNotFoundError(
            f"init_autoencoder: expected *encoder*.pth and *decoder*.pth in {folder}"
        )
    n = load_taesd_layers(student.vae, enc[0], dec[0])
    if student.config.residual:
        last = student._decoder_last_conv()
        if last is not None:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
    return n


def _freeze_unused(module: DistillModule, channels: int, size: int, features: bool) -> int:
    """:func:`~slimdiffsr.training.loop.freeze_unused` on one probe forward (SR and features)."""
    sr, feats = module(torch.zeros(1, channels, size, size), features=features)
    return freeze_unused(module, sr.float().sum() + sum(f.float().sum() for f in (feats or [])))


def _crop_common(
    a: list[torch.Tensor], b: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Crop paired maps to their common top-left size: student and teacher pad to different
    multiples at the bottom/right, and the padding is not image content."""
    out_a, out_b = [], []
    for x, y in zip(a, b):
        h, w = min(x.shape[-2], y.shape[-2]), min(x.shape[-1], y.shape[-1])
        out_a.append(x[..., :h, :w])
        out_b.append(y[..., :h, :w])
    return out_a, out_b


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
class DistillRun(StageRun):
    """Builds everything from a :class:`DistillConfig` and trains; see :meth:`StageRun.train`."""

    tracker_name = "distill"
    validate_at_start = True

    def __init__(self, cfg: DistillConfig) -> None:
        self.cfg = cfg
        self._early_checks()
        super().__init__(cfg)
        acc = self.accelerator
        self.deg_cfg = DegradationConfig.preset(cfg.degradation)
        self.contract = value_contract(cfg)
        self.build_data()
        self.train_files = [str(i.path) for i in getattr(self.train_set, "infos", [])]
        channels = self.train_set.channels
        self.teacher = None
        if cfg.uses_teacher:
            if channels != 3:
                raise ConfigError(
                    f"the teacher works on 3 bands; the data has {channels} (set bands)"
                )
            self.teacher = load_teacher(cfg.teacher, cfg.scale, self._teacher_dtype()).to(
                acc.device
            )
        from slimdiffsr.models.student import SlimDiffSRStudent

        student = SlimDiffSRStudent.from_preset(
            cfg.student_preset, scale=cfg.scale, in_channels=channels, **cfg.student_overrides
        )
        if cfg.init_autoencoder:
            n = _init_autoencoder(student, cfg.init_autoencoder)
            log.info("initialised %d autoencoder tensors from %s", n, cfg.init_autoencoder)
        if cfg.init_student:
            from slimdiffsr.models.card import load_model_file

            state, _ = load_model_file(cfg.init_student)
            student.load_state_dict(state, strict=True)
            log.info("initialised the student from %s", cfg.init_student)
        adapters = self._make_adapters(student) if self.teacher is not None else None
        module = DistillModule(student, adapters)
        frozen = _freeze_unused(module, channels, cfg.crop_size // cfg.scale, adapters is not None)
        if frozen:
            log.info(
                "%d parameter tensors never receive gradients (kept in files, not trained)", frozen
            )
        self.lpips = LPIPSLoss(cfg.lpips_weights, cfg.lpips_net) if cfg.lpips_weights else None
        if self.lpips is not None:
            self.lpips.to(acc.device)
        # the student is prepared first so that it is model.safetensors in every checkpoint
        self.module, self.optimizer = self.prepare(module, self.adam(module.parameters()))
        self.disc = None
        if cfg.loss_adv > 0:
            if channels != 3:
                raise ConfigError(f"the discriminator works on 3 bands; the data has {channels}")
            from slimdiffsr.models.discriminator import DinoDiscriminator

            disc = (
                DinoDiscriminator.tiny()
                if cfg.discriminator == "tiny"
                else DinoDiscriminator(cfg.dino_weights)
            )
            self.disc, _ = self.prepare(disc, self.adam(disc.parameters()))
        self.state.decisions["mse_normalize"] = {"auto": None, "always": True, "never": False}[
            cfg.mse_normalize
        ]
        self.val_pairs = build_val_pairs(cfg) if acc.is_main_process else []
        self.start()

    # -- setup helpers ------------------------------------------------------------------------
    def _early_checks(self) -> None:
        """Fail before anything heavy: missing files, impossible settings."""
        cfg = self.cfg
        if cfg.teacher is not None and not cfg.no_dis and not Path(cfg.teacher).is_dir():
            raise FileNotFoundError(f"teacher folder not found: {cfg.teacher}")
        if (
            cfg.loss_adv > 0
            and cfg.discriminator == "dino"
            and not Path(cfg.dino_weights).is_file()
        ):
            raise FileNotFoundError(f"dino_weights file not found: {cfg.dino_weights}")
        for key, kind in (("lpips_weights", "file"), ("init_student", "file"),
                          ("init_autoencoder", "folder")):  # fmt: skip
            value = getattr(cfg, key)
            ok = value is None or (
                Path(value).is_file() if kind == "file" else Path(value).is_dir()
            )
            if not ok:
                raise FileNotFoundError(f"{key} {kind} not found: {value}")
        if not cfg.synthetic_data:
            train, val = train_and_val_sources(cfg)
            find_images(train)
            if val is not None:
                find_images(val)

    def _teacher_dtype(self) -> torch.dtype | None:
        name = self.cfg.teacher_dtype
        if name == "auto":
            return torch.float16 if self.accelerator.device.type == "cuda" else None
        return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[name]

    @torch.no_grad()
    def _make_adapters(self, student: nn.Module) -> FeatureAdapters:
        """Probe both networks once with a small input to learn the feature widths."""
        c = self.cfg
        lr = torch.zeros(1, 3, c.crop_size // c.scale, c.crop_size // c.scale)
        _, fs = student.forward_features(lr)
        ft = self._teacher_features(lr.to(self.accelerator.device))
        if len(fs) != len(ft):
            raise ConfigError(f"student has {len(fs)} feature levels, the teacher {len(ft)}")
        return FeatureAdapters([f.shape[1] for f in fs], [f.shape[1] for f in ft])

    def _teacher_features(self, lr: torch.Tensor) -> list[torch.Tensor]:
        dtype = next(self.teacher.parameters()).dtype
        with torch.no_grad():
            out = self.teacher(lr.to(dtype))
        return [f.float() for f in out.features]

    # -- the step -----------------------------------------------------------------------------
    def micro_step(self, hr01: torch.Tensor, micro: int) -> dict[str, torch.Tensor]:
        cfg, acc = self.cfg, self.accelerator
        dev = acc.device
        lr, hr = degrade_batch(hr01, cfg.scale, self.deg_cfg, cfg.seed, micro, acc.process_index)
        terms: dict[str, torch.Tensor] = {}
        with acc.autocast():
            sr, feats = self.module(lr, features=self.teacher is not None)
            rec = sr.new_zeros((), dtype=torch.float32)
            if cfg.loss_l1 > 0:
                terms["l1"] = l1_loss(sr, hr)
                rec = rec + cfg.loss_l1 * terms["l1"]
            if cfg.loss_l2 > 0:
                terms["l2"] = l2_loss(sr, hr)
                rec = rec + cfg.loss_l2 * terms["l2"]
            if cfg.loss_lpips > 0:
                terms["lpips"] = self.lpips(sr, hr)
                rec = rec + cfg.loss_lpips * terms["lpips"]
            if self.disc is not None:  # no DDP hooks: D's grads are not wanted here
                with frozen_discriminator(acc.unwrap_model(self.disc)) as disc:
                    terms["adv_g"] = generator_loss(disc(sr.float()))
                rec = rec + cfg.loss_adv * terms["adv_g"]
            terms["rec"] = rec
            loss = rec
            if self.teacher is not None:
                ft = self._teacher_features(lr)
                fs, ft = _crop_common(feats, ft)
                if self.state.decisions.get("mse_normalize") is None:  # step 0: magnitudes
                    raw = distillation_loss(fs, ft, use_mmd=False)["mse"].detach()
                    both = acc.reduce(torch.stack([raw, rec.detach()]), "mean")  # same on all ranks
                    self.state.decisions["mse_normalize"] = bool(both[0] > 10 * both[1])
                    log.info(
                        "feature MSE %.4g vs L_rec %.4g at step 0: normalise per layer=%s",
                        float(both[0]),
                        float(both[1]),
                        self.state.decisions["mse_normalize"],
                    )
                tok_gen = torch.Generator(device=dev).manual_seed(
                    seed_for(cfg.seed, micro, acc.process_index, 1)
                )
                dis = distillation_loss(
                    fs,
                    ft,
                    lambda_mmd=cfg.lambda_mmd,
                    use_mmd=not cfg.no_mmd,
                    normalize_mse=bool(self.state.decisions["mse_normalize"]),
                    max_tokens=cfg.mmd_tokens,
                    unbiased=cfg.mmd_unbiased,
                    generator=tok_gen,
                )
                terms["mse"], terms["mmd"] = dis["mse"], dis["mmd"]
                loss = rec + cfg.lambda_dis * dis["total"]
        terms["loss"] = loss
        acc.backward(loss)
        if self.disc is not None:  # one D step per G step (method section 4.5)
            with acc.autocast():
                d_loss = discriminator_loss(self.disc(hr), self.disc(sr.detach().float()))
            acc.backward(d_loss)
            terms["adv_d"] = d_loss.detach()
        return terms

    # -- validation ---------------------------------------------------------------------------
    def validate(self, step: int) -> dict[str, float]:
        """PSNR-Y (and LPIPS) of student and bicubic on the fixed pairs; a sample grid PNG."""
        student = self.accelerator.unwrap_model(self.module).student
        was_training = student.training
        student.eval()
        lpips = self.lpips if self.cfg.validation_lpips else None
        try:
            return self.validate_pairs(
                step, self.val_pairs, lambda lr, hr: (student(lr), {}), lpips
            )
        finally:
            student.train(was_training)

    # -- outputs ------------------------------------------------------------------------------
    def save_artifacts(self, folder: Path, step: int, final: bool) -> Path:
        """The student as a product model file with its card (in a checkpoint or at the end)."""
        return self.save_model(folder / f"{self.cfg.name}.safetensors", step)

    def save_model(self, path: Path, step: int) -> Path:
        """The student in the product's model format; the card says how it was trained."""
        cfg = self.cfg
        student = self.accelerator.unwrap_model(self.module).student
        infos = getattr(self.train_set, "infos", None)
        vc = self.contract or (infos[0].contract if infos else ValueContract.for_dtype("float32"))
        recipe = "distillation" if self.teacher is not None else "reconstruction-only (no teacher)"
        training = {
            "recipe": recipe,
            "steps": step,
            "scale": cfg.scale,
            "degradation": cfg.degradation,
            "crop_size": cfg.crop_size,
            "augment": cfg.augment,
            "batch_size": cfg.train_batch_size
            * self.accelerator.num_processes
            * cfg.gradient_accumulation_steps,
            "learning_rate": cfg.learning_rate,
            "lr_scheduler": f"{cfg.lr_scheduler}, warm-up {cfg.lr_warmup_steps} steps",
            "losses": {
                k: getattr(cfg, k)
                for k in ("loss_l1", "loss_l2", "loss_lpips")
                if getattr(cfg, k) > 0
            },
            "teacher": str(cfg.teacher) if self.teacher is not None else None,
            "distillation": None
            if self.teacher is None
            else {
                "lambda_dis": cfg.lambda_dis,
                "lambda_mmd": 0.0 if cfg.no_mmd else cfg.lambda_mmd,
            },
            "student_preset": cfg.student_preset,
            "init_autoencoder": cfg.init_autoencoder,
            "init_student": cfg.init_student,
            "train_images": len(self.train_files),
            "seed": cfg.seed,
        }
        if self.teacher is None:
            training["note"] = (
                "trained from scratch without the diffusion prior (no Stable Diffusion weights, "
                "no teacher); see method.md section 10"
            )
        metrics = {
            k.split("/", 1)[1]: round(v, 4)
            for k, v in (self.val_history[-1].items() if self.val_history else [])
            if k != "step"
        }
        desc = (
            cfg.model_description
            or f"SlimDiffSR student ({cfg.student_preset}, x{cfg.scale}), {recipe}"
        )
        return student.save_model(
            path,
            card=student.make_card(cfg.name),
            description=desc,
            license=cfg.model_license,
            bands=list(cfg.band_names),
            value_contract=vc.to_dict(),
            training=training,
            metrics=metrics,
        )

    def train(self) -> dict[str, Any]:
        summary = super().train()
        if self.accelerator.is_main_process:
            keys = ("step", "steps_per_s", "max_memory_gb", "replicas_identical", "processes")
            line = {k: summary[k] for k in keys if k in summary}
            print("summary " + json.dumps(line), flush=True)
        return summary

    def finish(self) -> dict[str, Any]:
        return {"replicas_identical": self.check_replicas()}

    def check_replicas(self) -> bool:
        """True when every rank holds the same weights (a DDP desync is a silent, costly bug)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return True
        module = acc.unwrap_model(self.module)
        flat = torch.cat([p.detach().float().flatten() for p in module.parameters()])
        gathered = acc.gather(flat[None])
        if not bool((gathered == gathered[0:1]).all()):
            raise RuntimeError("DDP replicas hold different weights after training")
        return True


def run(cfg: DistillConfig) -> dict[str, Any]:
    """Build and train (the whole of ``training/distill.py`` after argument parsing)."""
    return DistillRun(cfg).train()


__all__ = ["DistillModule", "DistillRun", "load_teacher", "run"]
