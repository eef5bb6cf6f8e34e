"""Stage 1: train the uncertainty-guided one-step teacher (method.md sections 4.1-4.5).

LoRA on the SD-2.x UNet (rank 32) and VAE decoder (rank 16) plus the noise-level predictor train
with ``MSE + 2.5 LPIPS + 0.25 adversarial + 0.1 TV(sigma_hat)``; the discriminator's heads train
one step per generator step on a frozen DINO ViT-B/16. The estimator U comes from stage 0.

Real run (paper recipe: AdamW 2e-4, weight decay 0.01, 25k steps, batch 2, 256 crops, bf16,
gradient clip 1)::

    python training/train_teacher.py \\
        --pretrained_model_name_or_path /models/sd-turbo \\
        --output_dir runs/teacher-x4 \\
        --set estimator_path=runs/uncertainty-x4/estimator \\
        --set loss.lpips_weights=/models/lpips_vgg.pth \\
        --set discriminator.backbone_weights=/models/dino_vitbase16_pretrain.pth \\
        --set data.train=training/splits/shared_data.json

``--set teacher.timestep_mode=fixed`` trains the fixed-t ablation (no estimator needed).
Outputs: ``checkpoint-{step}/`` (LoRA + predictor, estimator, discriminator heads, optimizers, RNG,
config; ``--resume_from_checkpoint latest`` resumes exactly), ``validation/`` images and
``validation.jsonl`` numbers, and at the end:

- ``teacher/``: complete and self-contained, LoRA merged (``SlimDiffSRTeacher.from_trained(dir)``;
  ``training/distill.py --teacher OUT/teacher``); its ``unet/`` is the student builder's start;
- ``teacher_lora/``: LoRA + predictor + estimator on top of the base folder
  (``SlimDiffSRTeacher.from_trained(dir, base_folder)``), to continue training.

``--benchmark`` runs 50 steps at 256x256 in bf16 on random SD-2.x-sized weights and reports
steps/s and peak memory (the GPU check of issue 6).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from safetensors.torch import load_file, save_file
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
    psnr,
    resolve_checkpoint,
    rotate_checkpoints,
    save_config,
    save_optimizer,
    save_training_state,
)

from slimdiffsr.losses.adversarial import discriminator_loss, generator_loss  # noqa: E402
from slimdiffsr.losses.reconstruction import LPIPSLoss, l2_loss  # noqa: E402
from slimdiffsr.losses.tv import tv_loss  # noqa: E402
from slimdiffsr.models.bicubic import bicubic_upsample  # noqa: E402
from slimdiffsr.models.discriminator import DinoDiscriminator  # noqa: E402
from slimdiffsr.models.teacher import (  # noqa: E402
    PROMPT_FILE,
    TRAINED_WEIGHTS,
    SlimDiffSRTeacher,
    TeacherConfig,
    random_components,
)
from slimdiffsr.models.uncertainty import UncertaintyEstimator  # noqa: E402

log = logging.getLogger("train_teacher")

_TEACHER_DEFAULTS = {k: v for k, v in TeacherConfig().to_dict().items() if k != "scale"}

DEFAULTS: dict[str, Any] = {
    "pretrained_model_name_or_path": None,
    "estimator_path": None,
    "random_init": None,
    "output_dir": "runs/teacher",
    "seed": 0,
    "scale": 4,
    "max_train_steps": 25000,
    "train_batch_size": 2,
    "learning_rate": 2e-4,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "adam_weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "mixed_precision": "bf16",
    "checkpointing_steps": 1000,
    "checkpoints_total_limit": 3,
    "resume_from_checkpoint": None,
    "validation_steps": 1000,
    "validation_images": 4,
    "export_merged": True,
    "report_to": None,
    "teacher": _TEACHER_DEFAULTS,
    "loss": {
        "l2": 1.0,
        "lpips": 2.5,
        "adversarial": 0.25,
        "tv": 0.1,
        "lpips_weights": None,
        "lpips_net": "vgg",
    },
    "discriminator": {
        "size": "vit_b16",
        "backbone_weights": None,
        "learning_rate": None,
    },
    "data": {**DATA_DEFAULTS, "val_max_images": 4},
}

BENCHMARK = [
    "random_init=sd2",
    "data.synthetic=true",
    "data.crop_size=256",
    "data.num_workers=2",
    "data.val_max_images=0",
    "max_train_steps=50",
    "train_batch_size=2",
    "mixed_precision=bf16",
    "checkpointing_steps=0",
    "validation_steps=0",
    "export_merged=false",
]


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument(
        "--benchmark", action="store_true", help="50 bf16 steps on random SD-2.x-sized weights"
    )
    args = parser.parse_args(argv)
    if args.benchmark:
        args.overrides = BENCHMARK + list(args.overrides)
    cfg = config_from_args({**DEFAULTS, "benchmark": False}, args, parser)
    cfg["benchmark"] = args.benchmark
    try:
        TeacherConfig.from_dict({**cfg["teacher"], "scale": cfg["scale"]})  # validates the section
    except ValueError as e:
        parser.error(str(e))
    if not cfg["pretrained_model_name_or_path"] and cfg["random_init"] is None:
        parser.error("pretrained_model_name_or_path (a local SD-2.x diffusers folder) is required")
    if cfg["random_init"] not in (None, "tiny", "sd2"):
        parser.error(f"random_init must be null, 'tiny' or 'sd2', got {cfg['random_init']!r}")
    if cfg["discriminator"]["size"] not in ("vit_b16", "tiny"):
        parser.error("discriminator.size must be 'vit_b16' or 'tiny'")
    adaptive = cfg["teacher"]["timestep_mode"] == "adaptive"
    if adaptive and not cfg["estimator_path"] and cfg["random_init"] is None:
        parser.error("estimator_path (stage-0 output, OUT/estimator) is required in adaptive mode")
    if cfg["data"]["crop_size"] % (8 * cfg["scale"]):
        parser.error("data.crop_size must be a multiple of 8 x scale")
    return cfg


# ------------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------------


def encode_empty_prompt(folder: Path) -> torch.Tensor:
    """Encode "" once with the folder's CLIP text encoder (SD-2.x: last hidden state, 1x77xD)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
    enc = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", local_files_only=True)
    ids = tok(
        "",
        padding="max_length",
        max_length=tok.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        return enc(ids)[0].float()


def build_teacher(cfg: dict[str, Any], weight_dtype: torch.dtype) -> SlimDiffSRTeacher:
    tcfg = TeacherConfig.from_dict({**cfg["teacher"], "scale": cfg["scale"]})
    adaptive = tcfg.timestep_mode == "adaptive"
    if cfg["random_init"] is not None:
        unet, vae, prompt, abar = random_components(cfg["random_init"], cfg["seed"])
        torch.nn.Module.to(unet, weight_dtype)  # plain cast; nothing here must stay float32
        torch.nn.Module.to(vae, weight_dtype)
        est = UncertaintyEstimator() if adaptive else None
        teacher = SlimDiffSRTeacher(unet, vae, prompt, abar, tcfg, est)
    else:
        folder = Path(cfg["pretrained_model_name_or_path"])
        has_encoder = (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir()
        missing = not (folder / PROMPT_FILE).is_file()
        prompt = encode_empty_prompt(folder) if missing and has_encoder else None
        est = cfg["estimator_path"] if adaptive else None
        teacher = SlimDiffSRTeacher.from_pretrained(folder, tcfg, est, prompt, weight_dtype)
    return teacher


def build_discriminator(cfg: dict[str, Any], weight_dtype: torch.dtype) -> DinoDiscriminator:
    d = cfg["discriminator"]
    weights = d["backbone_weights"]
    if weights is None and d["size"] == "vit_b16" and cfg["random_init"] is None:
        raise FileNotFoundError(
            "discriminator.backbone_weights is required: a local DINO ViT-B/16 checkpoint "
            "(dino_vitbase16_pretrain.pth); or set loss.adversarial=0"
        )
    disc = DinoDiscriminator.tiny() if d["size"] == "tiny" else DinoDiscriminator(weights)
    disc.backbone.to(weight_dtype)
    return disc


def build_lpips(cfg: dict[str, Any], out_dir: Path) -> LPIPSLoss | None:
    loss = cfg["loss"]
    if not loss["lpips"]:
        return None
    weights = loss["lpips_weights"]
    if weights is None and cfg["random_init"] is not None:  # benchmarks: random LPIPS weights
        import lpips

        weights = out_dir / f"lpips_random_{loss['lpips_net']}.pth"
        net = lpips.LPIPS(pretrained=False, net=loss["lpips_net"], pnet_rand=True, verbose=False)
        torch.save(net.state_dict(), weights)
    if weights is None:
        raise FileNotFoundError(
            "loss.lpips_weights is required (a complete LPIPS state dict; see "
            "slimdiffsr.losses.reconstruction) or set loss.lpips=0"
        )
    return LPIPSLoss(weights, net=loss["lpips_net"])


# ------------------------------------------------------------------------------------------------
# Steps
# ------------------------------------------------------------------------------------------------


def generator_step(
    teacher, disc, lpips_fn, lr, hr, cfg
) -> tuple[torch.Tensor, dict[str, float], Any]:
    """``L_T = w_l2 MSE + w_lpips LPIPS + w_adv L_adv + w_tv TV(sigma_hat)``; returns (loss, logs, out)."""
    w = cfg["loss"]
    need_hr = cfg["teacher"]["predictor_latent"] == "z_h"
    out = teacher(lr, hr=hr if need_hr else None)
    terms = {"l2": l2_loss(out.image, hr)}
    if lpips_fn is not None:
        terms["lpips"] = lpips_fn(out.image, hr)
    if disc is not None:
        terms["adversarial"] = generator_loss(disc(out.image))
    if w["tv"] and cfg["teacher"]["timestep_mode"] == "adaptive":
        terms["tv"] = tv_loss(out.log_sigma.exp())
    loss = sum(w[k] * v for k, v in terms.items())
    logs = {k: v.item() for k, v in terms.items()}
    logs["t"] = out.timestep.float().mean().item()
    return loss, logs, out


@torch.no_grad()
def validate(teacher, lpips_fn, pairs, cfg, out_dir: Path, step: int, device) -> dict[str, float]:
    """PSNR (SR and bicubic), LPIPS and mean t over the fixed pairs; saves the first images."""
    from torchvision.utils import save_image

    was_training = teacher.training
    teacher.eval()
    sums = {"psnr": 0.0, "psnr_bicubic": 0.0, "lpips": 0.0, "t": 0.0}
    img_dir = out_dir / "validation" / f"step-{step:06d}"
    for k, p in enumerate(pairs):
        lr, hr = p["lr"][None].to(device) * 2 - 1, p["hr"][None].to(device) * 2 - 1
        hr_in = hr if cfg["teacher"]["predictor_latent"] == "z_h" else None
        out = teacher(lr, hr=hr_in)
        sr, bic = out.image.float().clamp(-1, 1), bicubic_upsample(lr, cfg["scale"]).clamp(-1, 1)
        sums["psnr"] += psnr(sr, hr)
        sums["psnr_bicubic"] += psnr(bic, hr)
        sums["lpips"] += lpips_fn(sr, hr).item() if lpips_fn is not None else 0.0
        sums["t"] += out.timestep.float().mean().item()
        if k < cfg["validation_images"]:
            img_dir.mkdir(parents=True, exist_ok=True)
            grid = (torch.cat([bic, sr, hr], dim=-1) + 1) / 2
            save_image(grid[:, :3], img_dir / f"{p['name']}.png")
    teacher.train(was_training)
    metrics = {f"val_{k}": v / len(pairs) for k, v in sums.items()}
    with open(out_dir / "validation.jsonl", "a") as f:
        f.write(json.dumps({"step": step, **metrics}) + "\n")
    return metrics


def save_checkpoint(path: Path, teacher, disc, opt_g, opt_d, step: int, cfg) -> None:
    path.mkdir(parents=True, exist_ok=True)
    teacher.save_trained(path / "teacher_lora")
    if disc is not None:
        heads = {k: v.detach().cpu().contiguous() for k, v in disc.trainable_state_dict().items()}
        save_file(heads, str(path / "discriminator_heads.safetensors"))
        save_optimizer(opt_d, path / "optimizer_d.safetensors")
    save_optimizer(opt_g, path / "optimizer_g.safetensors")
    save_training_state(path / "training_state.safetensors", step)
    save_config(cfg, path / "config.yaml")


def load_checkpoint(path: Path, teacher, disc, opt_g, opt_d) -> int:
    teacher.load_trainable_state_dict(load_file(str(path / "teacher_lora" / TRAINED_WEIGHTS)))
    if disc is not None:
        missing, unexpected = disc.load_state_dict(
            load_file(str(path / "discriminator_heads.safetensors")), strict=False
        )
        if unexpected or any(not k.startswith("backbone.") for k in missing):
            raise KeyError(
                f"{path}: discriminator heads do not match ({missing[:3]}, {unexpected[:3]})"
            )
        load_optimizer(opt_d, path / "optimizer_d.safetensors")
    load_optimizer(opt_g, path / "optimizer_g.safetensors")
    return load_training_state(path / "training_state.safetensors")


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def main(cfg: dict[str, Any]) -> dict[str, Any]:
    out_dir = Path(cfg["output_dir"])
    accelerator = Accelerator(
        mixed_precision=cfg["mixed_precision"],
        log_with=cfg["report_to"],
        project_config=ProjectConfiguration(project_dir=str(out_dir)),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    set_seed(cfg["seed"])
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    if cfg["report_to"]:
        accelerator.init_trackers("teacher", config={"scale": cfg["scale"]})
    device = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )
    teacher = build_teacher(cfg, weight_dtype)
    disc = build_discriminator(cfg, weight_dtype) if cfg["loss"]["adversarial"] else None
    lpips_fn = build_lpips(cfg, out_dir)
    if lpips_fn is not None:
        lpips_fn.to(device)

    def adamw(params, lr):
        return torch.optim.AdamW(
            params,
            lr=lr,
            betas=(cfg["adam_beta1"], cfg["adam_beta2"]),
            eps=cfg["adam_epsilon"],
            weight_decay=cfg["adam_weight_decay"],
        )

    g_params = [p for p in teacher.parameters() if p.requires_grad]
    opt_g = adamw(g_params, cfg["learning_rate"])
    opt_d = None
    if disc is not None:
        d_params = [p for p in disc.parameters() if p.requires_grad]
        opt_d = adamw(d_params, cfg["discriminator"]["learning_rate"] or cfg["learning_rate"])
    step = 0
    ckpt = resolve_checkpoint(out_dir, cfg["resume_from_checkpoint"])
    if ckpt is not None:
        step = load_checkpoint(ckpt, teacher, disc, opt_g, opt_d)
        log.info("resumed from %s at step %d", ckpt, step)
    teacher, opt_g = accelerator.prepare(teacher, opt_g)
    if disc is not None:
        disc, opt_d = accelerator.prepare(disc, opt_d)
    n_proc, rank, bs = accelerator.num_processes, accelerator.process_index, cfg["train_batch_size"]
    loader = build_train_loader(cfg["data"], cfg["seed"], bs * n_proc, step, cfg["max_train_steps"])
    main_proc = accelerator.is_main_process
    val_pairs = build_val_pairs(cfg["data"], cfg["scale"], cfg["seed"]) if main_proc else []
    history: list[dict[str, float]] = []
    step_times: list[float] = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    bar = tqdm(
        initial=step, total=cfg["max_train_steps"], disable=not accelerator.is_local_main_process
    )
    teacher.train()
    for batch in loader:
        t0 = time.perf_counter()
        batch = batch[rank * bs : (rank + 1) * bs].to(device)
        lr, hr = degrade_batch(batch, cfg["scale"], cfg["data"]["degradation"], cfg["seed"], step)
        with accelerator.autocast():
            loss, logs, out = generator_step(teacher, disc, lpips_fn, lr, hr, cfg)
        accelerator.backward(loss)
        if cfg["max_grad_norm"]:
            accelerator.clip_grad_norm_(g_params, cfg["max_grad_norm"])
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        if disc is not None:
            opt_d.zero_grad(set_to_none=True)
            with accelerator.autocast():  # one forward on [real; fake] (DDP-friendly)
                both = disc(torch.cat([hr, out.image.detach().to(hr.dtype)]))
                n = hr.shape[0]
                d_loss = discriminator_loss([x[:n] for x in both], [x[n:] for x in both])
            accelerator.backward(d_loss)
            if cfg["max_grad_norm"]:
                accelerator.clip_grad_norm_(d_params, cfg["max_grad_norm"])
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
            logs["disc"] = d_loss.item()
        logs["loss"] = loss.item()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        step_times.append(time.perf_counter() - t0)
        step += 1
        history.append(logs)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "disc", "t")})
        accelerator.log(logs, step=step)
        if main_proc:
            unwrapped = accelerator.unwrap_model(teacher)
            if cfg["checkpointing_steps"] and step % cfg["checkpointing_steps"] == 0:
                d = accelerator.unwrap_model(disc) if disc is not None else None
                save_checkpoint(
                    out_dir / f"checkpoint-{step}", unwrapped, d, opt_g, opt_d, step, cfg
                )
                rotate_checkpoints(out_dir, cfg["checkpoints_total_limit"])
            if val_pairs and cfg["validation_steps"] and step % cfg["validation_steps"] == 0:
                metrics = validate(unwrapped, lpips_fn, val_pairs, cfg, out_dir, step, device)
                accelerator.log(metrics, step=step)
                log.info("step %d: %s", step, metrics)
    bar.close()
    accelerator.wait_for_everyone()
    result: dict[str, Any] = {"step": step, "history": history}
    if main_proc:
        unwrapped = accelerator.unwrap_model(teacher)
        if cfg["benchmark"]:
            result["benchmark"] = benchmark_report(step_times, cfg, accelerator)
            (out_dir / "benchmark.json").write_text(json.dumps(result["benchmark"], indent=2))
            print(json.dumps(result["benchmark"]))
        else:
            unwrapped.save_trained(out_dir / "teacher_lora")
            if disc is not None:
                heads = accelerator.unwrap_model(disc).trainable_state_dict()
                save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()},
                          str(out_dir / "discriminator_heads.safetensors"))  # fmt: skip
            if cfg["export_merged"]:
                unwrapped.export_merged(out_dir / "teacher")
            if val_pairs:
                result["validation"] = validate(
                    unwrapped, lpips_fn, val_pairs, cfg, out_dir, step, device
                )
                log.info("final validation: %s", result["validation"])
    accelerator.end_training()
    return result


def benchmark_report(step_times: list[float], cfg: dict[str, Any], accelerator) -> dict[str, Any]:
    """Steps/s after a 5-step warm-up, and peak GPU memory."""
    timed = step_times[5:] if len(step_times) > 10 else step_times
    report: dict[str, Any] = {
        "steps": len(step_times),
        "timed_steps": len(timed),
        "steps_per_s": len(timed) / sum(timed),
        "batch": cfg["train_batch_size"],
        "crop": cfg["data"]["crop_size"],
        "mixed_precision": accelerator.mixed_precision,
        "random_init": cfg["random_init"],
        "device": str(accelerator.device),
    }
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return report


if __name__ == "__main__":
    main(parse_args())
