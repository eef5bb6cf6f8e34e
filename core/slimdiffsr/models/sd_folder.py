"""The SD-2.x diffusers folder the teacher is built from, and the files a trained teacher adds.

A base folder holds ``unet/``, ``vae/``, ``scheduler/`` and the empty-prompt embedding
(:data:`PROMPT_FILE`). Stage 1 adds :data:`TRAINED_CONFIG` (``TeacherConfig``),
:data:`TRAINED_WEIGHTS` (LoRA + noise-level predictor) and :data:`ESTIMATOR_DIR` (the frozen
stage-0 estimator); these names are defined here only. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from slimdiffsr.models.timestep import scaled_linear_alphas_cumprod, sigmas_from_alphas_cumprod

PROMPT_FILE = "empty_prompt_embeds.safetensors"
TRAINED_CONFIG = "teacher_config.json"
TRAINED_WEIGHTS = "teacher_trainable.safetensors"
ESTIMATOR_DIR = "estimator"
SD_DOWN_BLOCKS = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
SD_UP_BLOCKS = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3

# SD-2.x widths, for random stand-ins of the real networks (benchmarks, slimdiffsr.testing)
SD2_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), down_block_types=SD_DOWN_BLOCKS,
    up_block_types=SD_UP_BLOCKS, attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
    use_linear_projection=True, norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0,
)  # fmt: skip
SD2_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=512,
    scaling_factor=0.18215,
)  # fmt: skip


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{what} not found: {path} (the teacher needs a local SD-2.x diffusers folder with "
            f"unet/, vae/, scheduler/ and {PROMPT_FILE}; nothing is downloaded)"
        )
    return path


def require_weights(folder: Path, sub: str) -> None:
    require(folder / sub / "config.json", f"{sub} config")
    if not any((folder / sub).glob("diffusion_pytorch_model*")):
        raise FileNotFoundError(
            f"{sub} weights not found: {folder / sub / 'diffusion_pytorch_model.safetensors'}"
        )


def load_alphas_cumprod(folder: str | Path) -> torch.Tensor:
    """``alphas_cumprod`` (float64) from ``scheduler/scheduler_config.json``; epsilon prediction only."""
    path = require(Path(folder) / "scheduler" / "scheduler_config.json", "scheduler config")
    cfg = json.loads(path.read_text())
    pred = cfg.get("prediction_type", "epsilon")
    if pred != "epsilon":
        raise ValueError(f"{path}: prediction_type {pred!r} is not supported (need 'epsilon')")
    kind = cfg.get("beta_schedule", "linear")
    n = int(cfg.get("num_train_timesteps", 1000))
    b0, b1 = float(cfg.get("beta_start", 0.0001)), float(cfg.get("beta_end", 0.02))
    if kind == "scaled_linear":
        return scaled_linear_alphas_cumprod(n, b0, b1)
    if kind == "linear":
        return torch.cumprod(1 - torch.linspace(b0, b1, n, dtype=torch.float64), 0)
    raise ValueError(f"{path}: beta_schedule {kind!r} is not supported")


def load_prompt_embeds(folder: str | Path) -> torch.Tensor:
    """The fixed empty-prompt embedding ``(1, 77, D)`` from ``FOLDER/empty_prompt_embeds.safetensors``."""
    path = Path(folder) / PROMPT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: encode the empty prompt once with the folder's text encoder "
            f"(training/train_teacher.py does this when text_encoder/ and tokenizer/ exist) or pass "
            f"prompt_embeds= explicitly"
        )
    return load_file(str(path))["prompt_embeds"]


def check_sd_shape(unet) -> None:
    """The feature table and LoRA targets assume SD-2.x's block layout; refuse anything else."""
    cfg = unet.config
    if tuple(cfg.down_block_types) != SD_DOWN_BLOCKS or tuple(cfg.up_block_types) != SD_UP_BLOCKS:
        raise ValueError(
            f"UNet is not SD-shaped: down {tuple(cfg.down_block_types)}, up "
            f"{tuple(cfg.up_block_types)}; expected {SD_DOWN_BLOCKS} and {SD_UP_BLOCKS}"
        )
    if cfg.in_channels != 4 or cfg.out_channels != 4:
        raise ValueError(
            f"UNet must have 4 in/out channels, got {cfg.in_channels}/{cfg.out_channels}"
        )


def save_scheduler(folder: str | Path, sigmas: torch.Tensor | None = None) -> None:
    """Write SD's ``scheduler/scheduler_config.json`` (scaled_linear, epsilon)."""
    if sigmas is not None:
        ref = sigmas_from_alphas_cumprod(scaled_linear_alphas_cumprod(sigmas.numel()))
        if not torch.allclose(sigmas, ref, rtol=1e-6):
            raise ValueError("only the scaled_linear schedule can be exported")
    cfg = {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": 1000 if sigmas is None else int(sigmas.numel()),
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
    }
    path = Path(folder) / "scheduler"
    path.mkdir(parents=True, exist_ok=True)
    (path / "scheduler_config.json").write_text(json.dumps(cfg, indent=2))


__all__ = [
    "ESTIMATOR_DIR",
    "PROMPT_FILE",
    "SD2_UNET",
    "SD2_VAE",
    "SD_DOWN_BLOCKS",
    "SD_UP_BLOCKS",
    "TRAINED_CONFIG",
    "TRAINED_WEIGHTS",
    "check_sd_shape",
    "load_alphas_cumprod",
    "load_prompt_embeds",
    "require",
    "require_weights",
    "save_scheduler",
]
