"""Stage 0: train the latent uncertainty estimator U (method.md section 4.2).

HR crops are degraded to LR, both go through the frozen SD VAE encoder (posterior mean x 0.18215)
and U learns ``mu = z_L + r`` and ``s = log sigma^2`` with the Jeffreys-prior loss. The frozen U is
the input of stage 1 (``training/train_teacher.py --set estimator_path=OUT/estimator``).

Real run (SD-2.x-base or sd-turbo folder on disk; paper recipe: Adam 1e-4, 20k steps, batch 16,
256 crops)::

    python training/train_uncertainty.py \\
        --pretrained_model_name_or_path /models/sd-turbo \\
        --output_dir runs/uncertainty-x4 \\
        --set data.train=training/splits/shared_data.json --set scale=4

Writes ``checkpoint-{step}/`` (estimator, optimizer, RNG state, config; resume with
``--resume_from_checkpoint latest``), ``validation.jsonl`` and the final ``estimator/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DATA_DEFAULTS,
    add_common_args,
    build_train_loader,
    build_val_pairs,
    config_from_args,
    degrade_batch,
    load_optimizer,
    load_training_state,
    resolve_checkpoint,
    rotate_checkpoints,
    save_config,
    save_optimizer,
    save_training_state,
)

from slimdiffsr.losses.uncertainty import UNCERTAINTY_LOSSES  # noqa: E402
from slimdiffsr.models.bicubic import bicubic_upsample  # noqa: E402
from slimdiffsr.models.uncertainty import UncertaintyEstimator  # noqa: E402

log = logging.getLogger("train_uncertainty")

DEFAULTS: dict[str, Any] = {
    "pretrained_model_name_or_path": None,
    "output_dir": "runs/uncertainty",
    "seed": 0,
    "scale": 4,
    "max_train_steps": 20000,
    "train_batch_size": 16,
    "learning_rate": 1e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "adam_weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "mixed_precision": "no",
    "checkpointing_steps": 1000,
    "checkpoints_total_limit": 3,
    "resume_from_checkpoint": None,
    "validation_steps": 1000,
    "loss": "jeffreys",
    "estimator": {
        "hidden_channels": 64,
        "num_blocks": 3,
        "logvar_channels": 1,
        "logvar_range": [-10.0, 10.0],
    },
    "data": DATA_DEFAULTS,
}


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    cfg = config_from_args(DEFAULTS, parser.parse_args(argv), parser)
    if not cfg["pretrained_model_name_or_path"]:
        parser.error("pretrained_model_name_or_path (a local SD-2.x diffusers folder) is required")
    if cfg["loss"] not in UNCERTAINTY_LOSSES:
        parser.error(f"loss must be one of {sorted(UNCERTAINTY_LOSSES)}, got {cfg['loss']!r}")
    if cfg["data"]["crop_size"] % (8 * cfg["scale"]):
        parser.error("data.crop_size must be a multiple of 8 x scale")
    if cfg["max_train_steps"] < 1 or cfg["train_batch_size"] < 1:
        parser.error("max_train_steps and train_batch_size must be >= 1")
    return cfg


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
    return encode(vae, bicubic_upsample(lr, scale)), encode(vae, hr)


@torch.no_grad()
def validate(estimator, vae, pairs, cfg, device) -> dict[str, float]:
    """Loss, MSE of mu and of z_L against z_H, and how well s ranks the actual errors."""
    loss_fn = UNCERTAINTY_LOSSES[cfg["loss"]]
    estimator.eval()
    totals = {"val_loss": 0.0, "val_mse_mu": 0.0, "val_mse_zl": 0.0, "val_corr_s_err": 0.0}
    for p in pairs:
        lr, hr = p["lr"][None].to(device) * 2 - 1, p["hr"][None].to(device) * 2 - 1
        z_l, z_h = latent_pair(vae, lr, hr, cfg["scale"])
        out = estimator(z_l)
        err = (z_h - out.mean).pow(2)
        s = out.logvar.mean(1).flatten()
        le = err.mean(1).clamp_min(1e-8).log().flatten()
        corr = torch.corrcoef(torch.stack([s, le]))[0, 1]
        totals["val_loss"] += loss_fn(z_h, out.mean, out.logvar).item()
        totals["val_mse_mu"] += err.mean().item()
        totals["val_mse_zl"] += (z_h - z_l).pow(2).mean().item()
        totals["val_corr_s_err"] += 0.0 if torch.isnan(corr) else corr.item()
    estimator.train()
    return {k: v / len(pairs) for k, v in totals.items()}


def save_checkpoint(path: Path, estimator, optimizer, step: int, cfg) -> None:
    path.mkdir(parents=True, exist_ok=True)
    estimator.save_pretrained(path / "estimator", safe_serialization=True)
    save_optimizer(optimizer, path / "optimizer.safetensors")
    save_training_state(path / "training_state.safetensors", step)
    save_config(cfg, path / "config.yaml")


def main(cfg: dict[str, Any]) -> dict[str, Any]:
    out_dir = Path(cfg["output_dir"])
    accelerator = Accelerator(
        mixed_precision=cfg["mixed_precision"],
        project_config=ProjectConfiguration(project_dir=str(out_dir)),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    set_seed(cfg["seed"])
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    device = accelerator.device
    vae = load_vae(cfg["pretrained_model_name_or_path"]).to(device)
    estimator = UncertaintyEstimator(**cfg["estimator"])
    optimizer = torch.optim.Adam(
        estimator.parameters(),
        lr=cfg["learning_rate"],
        betas=(cfg["adam_beta1"], cfg["adam_beta2"]),
        eps=cfg["adam_epsilon"],
        weight_decay=cfg["adam_weight_decay"],
    )
    step = 0
    ckpt = resolve_checkpoint(out_dir, cfg["resume_from_checkpoint"])
    if ckpt is not None:
        saved = UncertaintyEstimator.from_pretrained(ckpt / "estimator", local_files_only=True)
        estimator.load_state_dict(saved.state_dict())
        load_optimizer(optimizer, ckpt / "optimizer.safetensors")
        step = load_training_state(ckpt / "training_state.safetensors")
        log.info("resumed from %s at step %d", ckpt, step)
    estimator, optimizer = accelerator.prepare(estimator, optimizer)
    n_proc = accelerator.num_processes
    bs = cfg["train_batch_size"]
    loader = build_train_loader(cfg["data"], cfg["seed"], bs * n_proc, step, cfg["max_train_steps"])
    val_pairs = (
        build_val_pairs(cfg["data"], cfg["scale"], cfg["seed"])
        if accelerator.is_main_process
        else []
    )
    loss_fn = UNCERTAINTY_LOSSES[cfg["loss"]]
    rank = accelerator.process_index
    history: list[float] = []
    bar = tqdm(
        initial=step, total=cfg["max_train_steps"], disable=not accelerator.is_local_main_process
    )
    estimator.train()
    for batch in loader:
        batch = batch[rank * bs : (rank + 1) * bs].to(device)
        lr, hr = degrade_batch(batch, cfg["scale"], cfg["data"]["degradation"], cfg["seed"], step)
        z_l, z_h = latent_pair(vae, lr, hr, cfg["scale"])
        with accelerator.autocast():
            out = estimator(z_l)
        loss = loss_fn(z_h, out.mean, out.logvar)
        accelerator.backward(loss)
        if cfg["max_grad_norm"]:
            accelerator.clip_grad_norm_(estimator.parameters(), cfg["max_grad_norm"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        history.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
        accelerator.log({"train_loss": history[-1]}, step=step)
        if accelerator.is_main_process:
            if cfg["checkpointing_steps"] and step % cfg["checkpointing_steps"] == 0:
                unwrapped = accelerator.unwrap_model(estimator)
                save_checkpoint(out_dir / f"checkpoint-{step}", unwrapped, optimizer, step, cfg)
                rotate_checkpoints(out_dir, cfg["checkpoints_total_limit"])
            if val_pairs and cfg["validation_steps"] and step % cfg["validation_steps"] == 0:
                metrics = validate(accelerator.unwrap_model(estimator), vae, val_pairs, cfg, device)
                with open(out_dir / "validation.jsonl", "a") as f:
                    f.write(json.dumps({"step": step, **metrics}) + "\n")
                log.info("step %d: %s", step, metrics)
    bar.close()
    accelerator.wait_for_everyone()
    result: dict[str, Any] = {"step": step, "losses": history}
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(estimator)
        unwrapped.save_pretrained(out_dir / "estimator", safe_serialization=True)
        if val_pairs:
            result["validation"] = validate(unwrapped, vae, val_pairs, cfg, device)
            log.info("final validation: %s", result["validation"])
    accelerator.end_training()
    return result


if __name__ == "__main__":
    main(parse_args())
