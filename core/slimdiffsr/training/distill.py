"""Stage 2: train the student, with feature distillation from a frozen teacher (method.md section 5)
or, without a teacher, on reconstruction losses only (the shipped default, method.md section 10).

One optimisation step, per micro-batch: HR crops in [0, 1] -> :func:`degrade` on the device with a
generator seeded by ``(seed, micro-batch, rank)`` -> both mapped to [-1, 1] -> student (and, when
distilling, its five features through 1x1 adapters) -> ``L_rec + lambda_dis (L_mse + lambda_mmd
L_mmd)`` -> Adam with gradient clipping.

Exact resume: crops are a pure function of ``(seed, epoch, index)`` and the sampler a pure function
of the step, degradation and token subsampling are seeded per micro-batch, and Accelerate's state
(weights, optimizer, RNG) plus :class:`TrainState` is saved in ``checkpoint-{step}``. A resumed run
therefore takes exactly the steps an uninterrupted one would, without replaying data.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from slimdiffsr.contract import ValueContract
from slimdiffsr.data.datasets import (
    DatasetError,
    PairedDataset,
    RasterPatchDataset,
    build_paired_val,
    find_images,
    load_split,
)
from slimdiffsr.data.degradation import DegradationConfig, degrade
from slimdiffsr.losses.adversarial import discriminator_loss, generator_loss
from slimdiffsr.losses.distill import FeatureAdapters, distillation_loss
from slimdiffsr.losses.reconstruction import LPIPSLoss, l1_loss, l2_loss
from slimdiffsr.training.config import ConfigError, DistillConfig, save_config

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TEACHER_CONFIG = "teacher_config.json"
TEACHER_TRAINABLE = "teacher_trainable.safetensors"
TEACHER_ESTIMATOR = "estimator"


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def psnr_y(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) on BT.601 luma of the first three bands (all bands if fewer).

    ``sr``, ``hr`` (B, C, H, W) in [0, 1]; ``sr`` is clamped. Identical images give inf.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} must have the same shape")
    sr, hr = sr.float().clamp(0, 1), hr.float()

    def luma(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] >= 3:
            w = x.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
            return ((x[:, :3] * w).sum(1) + 16.0) / 255.0
        return x.mean(1)

    mse = (luma(sr) - luma(hr)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


# ------------------------------------------------------------------------------------------------
# Data: deterministic, resumable stream of crops
# ------------------------------------------------------------------------------------------------
class KeyedCrops(Dataset):
    """Adapter: key ``epoch * N + index`` -> the dataset's crop for ``(index, epoch)``."""

    def __init__(self, dataset: RasterPatchDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> torch.Tensor:
        n = len(self.dataset)
        return self.dataset.sample(key % n, key // n)


class StepSampler(Sampler[int]):
    """Endless keys for one rank: epoch-wise permutations of the dataset, cut into global batches.

    Global batch ``b`` holds positions ``b * world * per_rank .. +world * per_rank``; rank ``r``
    takes its contiguous share. ``start_batch`` skips batches without reading them (resume).
    """

    def __init__(
        self, n: int, per_rank: int, seed: int, rank: int = 0, world: int = 1, start_batch: int = 0
    ) -> None:
        self.n, self.per_rank, self.seed = n, per_rank, seed
        self.rank, self.world, self.start_batch = rank, world, start_batch
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (
                epoch,
                np.random.default_rng([self.seed, 7919, epoch]).permutation(self.n),
            )
        return self._perm[1]

    def __iter__(self) -> Iterator[int]:
        b = self.start_batch
        while True:
            base = (b * self.world + self.rank) * self.per_rank
            for j in range(self.per_rank):
                epoch, pos = divmod(base + j, self.n)
                yield int(epoch * self.n + self._permutation(epoch)[pos])
            b += 1


def train_and_val_sources(cfg: DistillConfig) -> tuple[Any, Any]:
    """The configured train and validation sources (a split ``.json`` supplies both)."""
    train, val = cfg.train_data, cfg.val_data
    if isinstance(train, str) and train.endswith(".json"):
        split = load_split(train)
        train = split.train
        if val is None:
            val = split.val
    return train, val


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
    """Load a frozen teacher from a folder: a diffusers SD folder (``unet/``, ``vae/``,
    ``scheduler/``, prompt embedding) plus optionally ``teacher_config.json`` (TeacherConfig),
    ``estimator/`` (stage-0 U, ``save_pretrained``) and ``teacher_trainable.safetensors``
    (LoRA + predictor from stage 1). Raises ``FileNotFoundError`` naming what is missing."""
    import json

    from safetensors.torch import load_file

    from slimdiffsr.models.teacher import SlimDiffSRTeacher, TeacherConfig

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"teacher folder not found: {folder}")
    cfg_file = folder / TEACHER_CONFIG
    tcfg = (
        TeacherConfig.from_dict(json.loads(cfg_file.read_text()))
        if cfg_file.is_file()
        else TeacherConfig()
    )
    if tcfg.scale != scale:
        if cfg_file.is_file():
            raise ConfigError(f"teacher {folder} is x{tcfg.scale}, the run is x{scale}")
        tcfg.scale = scale
    est = folder / TEACHER_ESTIMATOR
    estimator = est if (est / "config.json").is_file() else None
    if tcfg.timestep_mode == "adaptive" and estimator is None:
        raise FileNotFoundError(
            f"adaptive teacher needs its uncertainty estimator at {est}/config.json "
            f"(or set timestep_mode 'fixed' in {cfg_file.name})"
        )
    teacher = SlimDiffSRTeacher.from_pretrained(
        folder, tcfg, estimator=estimator, torch_dtype=dtype
    )
    trainable = folder / TEACHER_TRAINABLE
    if trainable.is_file():
        teacher.load_trainable_state_dict(load_file(str(trainable)))
    else:
        log.warning(
            "teacher %s has no %s: LoRA and predictor keep their initial values",
            folder,
            TEACHER_TRAINABLE,
        )
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
    """Stop training tensors the forward pass never uses (the published layout keeps unused
    modules such as ``time_embedding``); DDP would otherwise fail on parameters without grads.
    Returns how many tensors were frozen."""
    lr = torch.zeros(1, channels, size, size)
    sr, feats = module(lr, features=features)
    total = sr.float().sum() + sum(f.float().sum() for f in (feats or []))
    total.backward()
    frozen = 0
    for p in module.parameters():
        if p.requires_grad and p.grad is None:
            p.requires_grad_(False)
            frozen += 1
        p.grad = None
    return frozen


def _heads_trainable(disc: nn.Module) -> None:
    """Re-enable the discriminator heads (the ViT backbone stays frozen)."""
    for name, p in disc.named_parameters():
        if not name.startswith("backbone."):
            p.requires_grad_(True)


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
# State and checkpoints
# ------------------------------------------------------------------------------------------------
@dataclass
class TrainState:
    """What Accelerate does not track: the step and decisions taken during training."""

    step: int = 0
    mse_normalize: bool | None = None  # decided at step 0 in "auto" mode

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "mse_normalize": self.mse_normalize}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.mse_normalize = state.get("mse_normalize")


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-{step}`` folders, oldest first."""
    d = Path(output_dir)
    if not d.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in d.iterdir()
        if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def _seed_for(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
class DistillRun:
    """Builds everything from a :class:`DistillConfig` and trains; see :meth:`train`."""

    def __init__(self, cfg: DistillConfig) -> None:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        self.cfg = cfg
        self._early_checks()
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        out = Path(cfg.output_dir)
        # Accelerate only forms a CPU process group (gloo) when told to run on the CPU.
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.accelerator = Accelerator(
            cpu=cfg.cpu or (world > 1 and not torch.cuda.is_available()),
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            log_with=None if cfg.report_to == "none" else cfg.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(out), logging_dir=str(out / "logs")
            ),
        )
        acc = self.accelerator
        set_seed(cfg.seed)
        self.deg_cfg = DegradationConfig.preset(cfg.degradation)
        self.contract = ValueContract.parse(cfg.value_contract) if cfg.value_contract else None
        train_src, self.val_src = train_and_val_sources(cfg)
        self.train_set = RasterPatchDataset(
            train_src,
            crop_size=cfg.crop_size,
            bands=cfg.bands,
            pad=cfg.pad_small_images,
            value_contract=self.contract,
            seed=cfg.seed,
        )
        self.train_files = [str(i.path) for i in self.train_set.infos]
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
        self.module = DistillModule(student, adapters)
        frozen = _freeze_unused(
            self.module, channels, cfg.crop_size // cfg.scale, adapters is not None
        )
        if frozen:
            log.info(
                "%d parameter tensors never receive gradients (kept in files, not trained)", frozen
            )
        self.lpips = LPIPSLoss(cfg.lpips_weights, cfg.lpips_net) if cfg.lpips_weights else None
        if self.lpips is not None:
            self.lpips.to(acc.device)
        self.optimizer = torch.optim.Adam(
            [p for p in self.module.parameters() if p.requires_grad],
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.adam_weight_decay,
        )
        # the student is prepared first so that it is model.safetensors in every checkpoint
        self.module, self.optimizer = acc.prepare(self.module, self.optimizer)
        self.disc, self.optimizer_d = None, None
        if cfg.loss_adv > 0:
            if channels != 3:
                raise ConfigError(f"the discriminator works on 3 bands; the data has {channels}")
            from slimdiffsr.models.discriminator import DinoDiscriminator

            disc = (
                DinoDiscriminator.tiny()
                if cfg.discriminator == "tiny"
                else DinoDiscriminator(cfg.dino_weights)
            )
            opt_d = torch.optim.Adam(
                [p for p in disc.parameters() if p.requires_grad],
                lr=cfg.learning_rate,
                betas=(cfg.adam_beta1, cfg.adam_beta2),
            )
            self.disc, self.optimizer_d = acc.prepare(disc, opt_d)
        self.state = TrainState(
            mse_normalize={"auto": None, "always": True, "never": False}[cfg.mse_normalize]
        )
        acc.register_for_checkpointing(self.state)
        self.val_set: PairedDataset | None = None
        if acc.is_main_process and self.val_src is not None:
            self.val_set = build_paired_val(
                self.val_src,
                cfg.scale,
                self.deg_cfg,
                seed=cfg.seed,
                crop_size=cfg.val_crop_size,
                bands=cfg.bands,
                value_contract=self.contract,
                max_images=cfg.val_max_images,
            )
        if acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
            if cfg.report_to != "none":
                acc.init_trackers("distill", config=_flat_config(cfg))
        self.history: list[dict[str, float]] = []
        self.val_history: list[dict[str, float]] = []

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
        if cfg.lpips_weights is not None and not Path(cfg.lpips_weights).is_file():
            raise FileNotFoundError(f"lpips_weights file not found: {cfg.lpips_weights}")
        if cfg.init_student is not None and not Path(cfg.init_student).is_file():
            raise FileNotFoundError(f"init_student file not found: {cfg.init_student}")
        if cfg.init_autoencoder is not None and not Path(cfg.init_autoencoder).is_dir():
            raise FileNotFoundError(f"init_autoencoder folder not found: {cfg.init_autoencoder}")
        if cfg.resume_from_checkpoint is None and list_checkpoints(cfg.output_dir):
            raise ConfigError(
                f"output_dir {cfg.output_dir} already holds checkpoints; resume with "
                "--resume latest or choose another output_dir"
            )
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
    def _micro_step(self, hr01: torch.Tensor, micro: int) -> dict[str, torch.Tensor]:
        cfg, acc = self.cfg, self.accelerator
        dev = acc.device
        gen = torch.Generator(device=dev).manual_seed(_seed_for(cfg.seed, micro, acc.process_index))
        hr01 = hr01.to(dev, non_blocking=True)
        with torch.no_grad():
            lr01 = degrade(hr01, cfg.scale, self.deg_cfg, gen)
        lr, hr = lr01 * 2 - 1, hr01 * 2 - 1
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
            if self.disc is not None:
                disc = acc.unwrap_model(self.disc)  # no DDP hooks: D's grads are not wanted here
                disc.requires_grad_(False)
                terms["adv_g"] = generator_loss(disc(sr.float()))
                _heads_trainable(disc)
                rec = rec + cfg.loss_adv * terms["adv_g"]
            terms["rec"] = rec
            loss = rec
            if self.teacher is not None:
                ft = self._teacher_features(lr)
                fs, ft = _crop_common(feats, ft)
                if self.state.mse_normalize is None:  # method: check magnitudes at step 0
                    raw = distillation_loss(fs, ft, use_mmd=False)["mse"].detach()
                    both = acc.reduce(torch.stack([raw, rec.detach()]), "mean")  # same on all ranks
                    self.state.mse_normalize = bool(both[0] > 10 * both[1])
                    log.info(
                        "feature MSE %.4g vs L_rec %.4g at step 0: normalise per layer=%s",
                        float(both[0]),
                        float(both[1]),
                        self.state.mse_normalize,
                    )
                tok_gen = torch.Generator(device=dev).manual_seed(
                    _seed_for(cfg.seed, micro, acc.process_index, 1)
                )
                dis = distillation_loss(
                    fs,
                    ft,
                    lambda_mmd=cfg.lambda_mmd,
                    use_mmd=not cfg.no_mmd,
                    normalize_mse=bool(self.state.mse_normalize),
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

    def _batches(self, start_batch: int) -> Iterator[torch.Tensor]:
        cfg, acc = self.cfg, self.accelerator
        sampler = StepSampler(
            len(self.train_set),
            cfg.train_batch_size,
            cfg.seed,
            acc.process_index,
            acc.num_processes,
            start_batch,
        )
        loader = DataLoader(
            KeyedCrops(self.train_set),
            batch_size=cfg.train_batch_size,
            sampler=sampler,
            num_workers=cfg.dataloader_num_workers,
            pin_memory=acc.device.type == "cuda",
            persistent_workers=cfg.dataloader_num_workers > 0,
        )
        return iter(loader)

    # -- validation ---------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """PSNR-Y (and LPIPS) of student and bicubic on the fixed pairs; a sample grid PNG."""
        if self.val_set is None or not self.accelerator.is_main_process:
            return {}
        from slimdiffsr.models.bicubic import bicubic_upsample

        cfg, dev = self.cfg, self.accelerator.device
        student = self.accelerator.unwrap_model(self.module).student
        was_training = student.training
        student.eval()
        ps, pb, lp, samples = [], [], [], []
        for k, item in enumerate(self.val_set.pairs):
            lr = item["lr"][None].to(dev) * 2 - 1
            hr = item["hr"][None].to(dev)
            with self.accelerator.autocast():
                sr = student(lr).float()
            sr01 = ((sr + 1) / 2).clamp(0, 1)
            bic01 = ((bicubic_upsample(lr, cfg.scale) + 1) / 2).clamp(0, 1)
            ps.append(float(psnr_y(sr01, hr)[0]))
            pb.append(float(psnr_y(bic01, hr)[0]))
            if cfg.validation_lpips and self.lpips is not None:
                lp.append(float(self.lpips(sr01 * 2 - 1, hr * 2 - 1)))
            if k < cfg.num_sample_images:
                samples.append(torch.cat([bic01, sr01, hr], dim=-1)[0].cpu())
        student.train(was_training)
        metrics = {"val/psnr_y": float(np.mean(ps)), "val/psnr_y_bicubic": float(np.mean(pb))}
        metrics["val/psnr_y_gain"] = metrics["val/psnr_y"] - metrics["val/psnr_y_bicubic"]
        if lp:
            metrics["val/lpips"] = float(np.mean(lp))
        grid = _grid_image(samples)
        if grid is not None:
            path = Path(cfg.output_dir) / "samples" / f"step-{step:07d}.png"
            _save_png(grid, path)
            if cfg.report_to == "tensorboard":
                try:
                    tracker = self.accelerator.get_tracker("tensorboard")
                    tracker.log_images({"val/samples": grid}, step=step, dataformats="HWC")
                except Exception as e:  # pragma: no cover - logging must not stop training
                    log.warning("could not log sample images: %s", e)
        self.accelerator.log(metrics, step=step)
        self.val_history.append({"step": step, **metrics})
        return metrics

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> Path:
        """``checkpoint-{step}``: Accelerate state (weights, optimizer, RNG, TrainState) plus the
        student as a product model file with its card."""
        acc, cfg = self.accelerator, self.cfg
        path = Path(cfg.output_dir) / f"checkpoint-{step}"
        acc.wait_for_everyone()
        if acc.is_main_process and cfg.checkpoints_total_limit is not None:
            old = list_checkpoints(cfg.output_dir)
            for p in old[: max(0, len(old) - cfg.checkpoints_total_limit + 1)]:
                shutil.rmtree(p, ignore_errors=True)
        acc.save_state(str(path))
        if acc.is_main_process:
            self.save_model(path / f"{cfg.name}.safetensors", step)
        acc.wait_for_everyone()
        return path

    def save_model(self, path: Path, step: int) -> Path:
        """The student in the product's model format; the card says how it was trained."""
        cfg = self.cfg
        student = self.accelerator.unwrap_model(self.module).student
        vc = self.contract or self.train_set.infos[0].contract
        recipe = "distillation" if self.teacher is not None else "reconstruction-only (no teacher)"
        training = {
            "recipe": recipe,
            "steps": step,
            "scale": cfg.scale,
            "degradation": cfg.degradation,
            "crop_size": cfg.crop_size,
            "batch_size": cfg.train_batch_size
            * self.accelerator.num_processes
            * cfg.gradient_accumulation_steps,
            "learning_rate": cfg.learning_rate,
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

    def _resume(self) -> int:
        cfg = self.cfg
        if cfg.resume_from_checkpoint is None:
            return 0
        if cfg.resume_from_checkpoint == "latest":
            ckpts = list_checkpoints(cfg.output_dir)
            if not ckpts:
                log.warning("no checkpoint in %s: starting a new run", cfg.output_dir)
                return 0
            path = ckpts[-1]
        else:
            path = Path(cfg.resume_from_checkpoint)
        self.accelerator.load_state(str(path))
        log.info("resumed from %s at step %d", path, self.state.step)
        return self.state.step

    # -- main loop ----------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Run to ``max_train_steps``; returns a summary (losses, validation, final file)."""
        from tqdm.auto import tqdm

        cfg, acc = self.cfg, self.accelerator
        step = self._resume()
        accum = cfg.gradient_accumulation_steps
        if step == 0:
            self.validate(0)
        batches = self._batches(start_batch=step * accum)
        bar = tqdm(
            total=cfg.max_train_steps, initial=step, disable=not acc.is_main_process, desc="distill"
        )
        params = [p for p in self.module.parameters() if p.requires_grad]
        t_steps, step_time = 0, 0.0
        self.module.train()
        while step < cfg.max_train_steps:
            sums: dict[str, float] = {}
            t_step = time.perf_counter()
            for a in range(accum):
                hr01 = next(batches)
                with acc.accumulate(*[m for m in (self.module, self.disc) if m is not None]):
                    terms = self._micro_step(hr01, step * accum + a)
                    grad_norm = None
                    if acc.sync_gradients:
                        grad_norm = acc.clip_grad_norm_(params, cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    if self.optimizer_d is not None:
                        if acc.sync_gradients:
                            acc.clip_grad_norm_(self.disc.parameters(), cfg.max_grad_norm)
                        self.optimizer_d.step()
                        self.optimizer_d.zero_grad(set_to_none=True)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
            if not all(math.isfinite(v) for v in sums.values()):
                raise FloatingPointError(f"non-finite loss at step {step + 1}: {sums}")
            step += 1
            t_steps += 1
            if acc.device.type == "cuda":
                torch.cuda.synchronize(acc.device)
            step_time += time.perf_counter() - t_step
            self.state.step = step
            if grad_norm is not None:
                sums["grad_norm"] = float(grad_norm)
            self.history.append({"step": step, **sums})
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss']:.4f}")
            if step % cfg.logging_steps == 0 or step == cfg.max_train_steps:
                rate = t_steps / max(1e-9, step_time)
                acc.log(
                    {f"train/{k}": v for k, v in sums.items()} | {"train/steps_per_s": rate},
                    step=step,
                )
            if step % cfg.validation_steps == 0 or step == cfg.max_train_steps:
                m = self.validate(step)
                if m:
                    bar.write(
                        f"step {step}: val PSNR-Y {m['val/psnr_y']:.3f} dB (bicubic {m['val/psnr_y_bicubic']:.3f})"
                    )
            if step % cfg.checkpointing_steps == 0 or step == cfg.max_train_steps:
                self.save_checkpoint(step)
        bar.close()
        replicas_identical = self.check_replicas()
        final = None
        if acc.is_main_process:
            final = self.save_model(Path(cfg.output_dir) / f"{cfg.name}.safetensors", step)
        acc.wait_for_everyone()
        acc.end_training()
        summary = {
            "step": step,
            "history": self.history,
            "validation": self.val_history,
            "model": final,
            "steps_per_s": t_steps / max(1e-9, step_time),
            "replicas_identical": replicas_identical,
            "processes": acc.num_processes,
        }
        if acc.device.type == "cuda":
            summary["max_memory_gb"] = torch.cuda.max_memory_allocated(acc.device) / 2**30
        if acc.is_main_process:
            keys = ("step", "steps_per_s", "max_memory_gb", "replicas_identical", "processes")
            line = {k: summary[k] for k in keys if k in summary}
            print("summary " + json.dumps(line), flush=True)
        return summary

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


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def _flat_config(cfg: DistillConfig) -> dict[str, Any]:
    """TensorBoard hparams accept scalars and strings only."""
    out = {}
    for k, v in cfg.to_dict().items():
        out[k] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


def _grid_image(samples: list[torch.Tensor]) -> np.ndarray | None:
    """Rows of [bicubic | SR | HR] (first three bands) as an (H, W, 3) uint8 array."""
    if not samples:
        return None
    w = max(s.shape[-1] for s in samples)
    rows = []
    for s in samples:
        s = s[:3] if s.shape[0] >= 3 else s[:1].expand(3, -1, -1)
        rows.append(F.pad(s, (0, w - s.shape[-1], 0, 2)))
    grid = torch.cat(rows, dim=-2).clamp(0, 1)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def run(cfg: DistillConfig) -> dict[str, Any]:
    """Build and train (the whole of ``training/distill.py`` after argument parsing)."""
    return DistillRun(cfg).train()


__all__ = [
    "DatasetError",
    "DistillModule",
    "DistillRun",
    "KeyedCrops",
    "StepSampler",
    "TrainState",
    "list_checkpoints",
    "load_teacher",
    "psnr_y",
    "run",
]
