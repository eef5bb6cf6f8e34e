"""Tiny random stand-ins for the real networks, for tests and benchmarks (not for training).

Random SD-shaped UNet/VAE pairs (``tiny`` widths, or full ``sd2`` widths for speed and memory
measurements), a folder written through the real ``save_pretrained``, and a tiny teacher loaded
from it through the real :meth:`SlimDiffSRTeacher.from_pretrained` path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

from slimdiffsr.models.sd_folder import PROMPT_FILE, SD2_UNET, SD2_VAE, save_scheduler
from slimdiffsr.models.teacher import SlimDiffSRTeacher, TeacherConfig
from slimdiffsr.models.timestep import scaled_linear_alphas_cumprod
from slimdiffsr.models.uncertainty import UncertaintyEstimator

TINY_UNET = {
    **SD2_UNET, "sample_size": 8, "layers_per_block": 1, "block_out_channels": (32, 64, 64, 64),
    "attention_head_dim": (2, 4, 4, 4), "cross_attention_dim": 32,
}  # fmt: skip
TINY_VAE = {
    **SD2_VAE, "layers_per_block": 1, "block_out_channels": (8, 16, 16, 16), "norm_num_groups": 8,
    "sample_size": 64,
}  # fmt: skip


def random_components(
    size: str = "tiny", seed: int = 0
) -> tuple[UNet2DConditionModel, AutoencoderKL, torch.Tensor, torch.Tensor]:
    """Random SD-shaped (unet, vae, prompt_embeds, alphas_cumprod), ``tiny`` or full ``sd2`` widths."""
    if size not in ("tiny", "sd2"):
        raise ValueError(f"size must be 'tiny' or 'sd2', got {size!r}")
    torch.manual_seed(seed)
    unet_cfg, vae_cfg = (TINY_UNET, TINY_VAE) if size == "tiny" else (SD2_UNET, SD2_VAE)
    unet, vae = UNet2DConditionModel(**unet_cfg), AutoencoderKL(**vae_cfg)
    embeds = torch.randn(1, 77, unet_cfg["cross_attention_dim"])
    return unet, vae, embeds, scaled_linear_alphas_cumprod()


def make_sd_folder(folder: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random SD-shaped diffusers folder through the real ``save_pretrained``: unet/,
    vae/, scheduler/ and the empty-prompt embedding (see :func:`random_components`)."""
    folder = Path(folder)
    unet, vae, embeds, _ = random_components(size, seed)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    save_scheduler(folder)
    save_file({"prompt_embeds": embeds}, str(folder / PROMPT_FILE))
    return folder


def build_tiny_teacher(
    tmp_dir: str | Path, scale: int = 4, seed: int = 0, **config: Any
) -> SlimDiffSRTeacher:
    """A tiny random teacher loaded from a tiny SD-shaped folder in ``tmp_dir`` (tests of other
    modules). Extra keywords go to :class:`TeacherConfig`. Features have widths 32/64/64/64/32."""
    folder = Path(tmp_dir) / "tiny-sd"
    if not (folder / "unet" / "config.json").is_file():
        make_sd_folder(folder, "tiny", seed)
    torch.manual_seed(seed + 1)
    cfg = TeacherConfig(**{"scale": scale, "predictor_hidden": 8, "predictor_blocks": 1, **config})
    adaptive = cfg.timestep_mode == "adaptive"
    estimator = UncertaintyEstimator(hidden_channels=16, num_blocks=1) if adaptive else None
    return SlimDiffSRTeacher.from_pretrained(folder, cfg, estimator=estimator)


def make_teacher_folder(
    folder: str | Path, size: str = "tiny", seed: int = 0, **config: Any
) -> Path:
    """A random SD-shaped folder plus what stage 1 adds to it (``save_trained``: config, LoRA and
    predictor, estimator), so ``SlimDiffSRTeacher.from_trained(folder)`` and distillation's
    ``teacher=`` load it. Extra keywords go to :class:`TeacherConfig`."""
    folder = make_sd_folder(folder, size, seed)
    torch.manual_seed(seed + 1)
    small = {"predictor_hidden": 8, "predictor_blocks": 1} if size == "tiny" else {}
    cfg = TeacherConfig(**{"scale": 4, **small, **config})
    estimator = None
    if cfg.timestep_mode == "adaptive":
        estimator = UncertaintyEstimator(
            **({"hidden_channels": 16, "num_blocks": 1} if small else {})
        )
    SlimDiffSRTeacher.from_pretrained(folder, cfg, estimator=estimator).save_trained(folder)
    return folder


__all__ = [
    "TINY_UNET",
    "TINY_VAE",
    "build_tiny_teacher",
    "make_sd_folder",
    "make_teacher_folder",
    "random_components",
]
