"""Stage 0: train the latent uncertainty estimator U (method.md section 4.2).

HR crops are degraded to LR, both go through the frozen SD VAE encoder (posterior mean x the
VAE's scaling factor) and U learns ``mu = z_L + r`` and ``s = log sigma^2`` with the Jeffreys-prior
loss. The frozen U is the input of stage 1 (``estimator_path=OUT/estimator``). Loop, checkpoints
and exact resume are :class:`~slimdiffsr.training.loop.StageRun`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from slimdiffsr.data.degradation import DegradationConfig
from slimdiffsr.training.config import TrainConfig, need
from slimdiffsr.training.data import build_val_pairs, degrade_batch
from slimdiffsr.training.loop import StageRun

log = logging.getLogger(__name__)


@dataclass
class UncertaintyTrainConfig(TrainConfig):
    """Settings of ``training/train_uncertainty.py`` (paper: Adam 1e-4, 20k steps, batch 16)."""

    pretrained_model_name_or_path: str | None = None  # local SD-2.x diffusers folder (its VAE)
    uncertainty_loss: str = "jeffreys"  # jeffreys | laplace
    estimator: dict[str, Any] = field(
        default_factory=lambda: {
            "hidden_channels": 64,
            "num_blocks": 3,
            "logvar_channels": 1,
            "logvar_range": [-10.0, 10.0],
        }
    )
    learning_rate: float = 1e-4
    train_batch_size: int = 16
    max_train_steps: int = 20_000
    output_dir: str = "runs/uncertainty"
    checkpoints_total_limit: int | None = 3
    val_max_images: int | None = 8

    def validate(self) -> UncertaintyTrainConfig:
        from slimdiffsr.losses.uncertainty import UNCERTAINTY_LOSSES

        super().validate()
        need(bool(self.pretrained_model_name_or_path),
             "pretrained_model_name_or_path (a local SD-2.x diffusers folder) is required")  # fmt: skip
        need(self.uncertainty_loss in UNCERTAINTY_LOSSES,
             f"uncertainty_loss must be one of {sorted(UNCERTAINTY_LOSSES)}, got {self.uncertainty_loss!r}")  # fmt: skip
        need(self.crop_size % (8 * self.scale) == 0,
             f"crop_size {self.crop_size} must be a multiple of 8 x scale")  # fmt: skip
        return self


def load_vae(folder: str | Path):
    """The frozen SD VAE (only its encoder is used here)."""
    from diffusers import AutoencoderKL

    path = Path(folder) / "vae" / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"VAE config not found: {path} (need a local SD-2.x folder)")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
    return vae.requires_grad_(False).eval()


@torch.no_grad()
def encode(vae, x: torch.Tensor) -> torch.Tensor:
    """``scaling_factor * E(x).mean`` of a [-1, 1] image, padded to a multiple of 8."""
    H, W = x.shape[-2:]
    x = F.pad(x, (0, (-W) % 8, 0, (-H) % 8), mode="replicate")
    dtype = vae.encoder.conv_in.weight.dtype
    return vae.encode(x.to(dtype)).latent_dist.mean.float() * vae.config.scaling_factor


def latent_pair(vae, lr: torch.Tensor, hr: torch.Tensor, scale: int):
    """(z_L, z_H): latents of the bicubic-upsampled LR and of the HR image."""
    from slimdiffsr.models.bicubic import bicubic_upsample

    return encode(vae, bicubic_upsample(lr, scale)), encode(vae, hr)


class UncertaintyRun(StageRun):
    """Stage 0 from an :class:`UncertaintyTrainConfig`; :meth:`train` runs it."""

    tracker_name = "uncertainty"

    def __init__(self, cfg: UncertaintyTrainConfig) -> None:
        from slimdiffsr.losses.uncertainty import UNCERTAINTY_LOSSES
        from slimdiffsr.models.uncertainty import UncertaintyEstimator

        super().__init__(cfg)
        acc = self.accelerator
        self.build_data()
        self.deg = DegradationConfig.preset(cfg.degradation)
        self.vae = load_vae(cfg.pretrained_model_name_or_path).to(acc.device)
        self.loss_fn = UNCERTAINTY_LOSSES[cfg.uncertainty_loss]
        estimator = UncertaintyEstimator(**cfg.estimator)
        self.estimator, _ = self.prepare(estimator, self.adam(estimator.parameters()))
        self.val_pairs = build_val_pairs(cfg) if acc.is_main_process else []
        self.start()

    def micro_step(self, hr01: torch.Tensor, micro: int) -> dict[str, torch.Tensor]:
        cfg, acc = self.cfg, self.accelerator
        lr, hr = degrade_batch(hr01, cfg.scale, self.deg, cfg.seed, micro, acc.process_index)
        z_l, z_h = latent_pair(self.vae, lr, hr, cfg.scale)
        with acc.autocast():
            out = self.estimator(z_l)
        loss = self.loss_fn(z_h, out.mean, out.logvar)
        acc.backward(loss)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """Loss, MSE of mu and of z_L against z_H, and how well s ranks the actual errors."""
        if not self.val_pairs or not self.accelerator.is_main_process:
            return {}
        dev = self.accelerator.device
        estimator = self.accelerator.unwrap_model(self.estimator)
        estimator.eval()
        sums = {"val/loss": 0.0, "val/mse_mu": 0.0, "val/mse_zl": 0.0, "val/corr_s_err": 0.0}
        for p in self.val_pairs:
            lr, hr = p["lr"][None].to(dev) * 2 - 1, p["hr"][None].to(dev) * 2 - 1
            z_l, z_h = latent_pair(self.vae, lr, hr, self.cfg.scale)
            out = estimator(z_l)
            err = (z_h - out.mean).pow(2)
            s = out.logvar.mean(1).flatten()
            le = err.mean(1).clamp_min(1e-8).log().flatten()
            corr = torch.corrcoef(torch.stack([s, le]))[0, 1]
            sums["val/loss"] += self.loss_fn(z_h, out.mean, out.logvar).item()
            sums["val/mse_mu"] += err.mean().item()
            sums["val/mse_zl"] += (z_h - z_l).pow(2).mean().item()
            sums["val/corr_s_err"] += 0.0 if torch.isnan(corr) else corr.item()
        estimator.train()
        return self.record_validation(step, {k: v / len(self.val_pairs) for k, v in sums.items()})

    def save_artifacts(self, folder: Path, step: int, final: bool) -> Path:
        """``estimator/`` (``UncertaintyEstimator.from_pretrained``)."""
        out = folder / "estimator"
        self.accelerator.unwrap_model(self.estimator).save_pretrained(out, safe_serialization=True)
        return out


def run(cfg: UncertaintyTrainConfig) -> dict[str, Any]:
    """Build and train (the whole of ``training/train_uncertainty.py`` after argument parsing)."""
    return UncertaintyRun(cfg).train()


__all__ = ["UncertaintyRun", "UncertaintyTrainConfig", "encode", "latent_pair", "load_vae", "run"]
