"""Stage 1: train the uncertainty-guided one-step teacher (method.md sections 4.1-4.5).

LoRA on the SD-2.x UNet (rank 32) and VAE decoder (rank 16) plus the noise-level predictor train
with ``MSE + 2.5 LPIPS + 0.25 adversarial + 0.1 TV(sigma_hat)``; the discriminator's heads train
one step per generator step on a frozen DINO ViT-B/16. The estimator U comes from stage 0.

Checkpoints hold the Accelerate state with only the trainable tensors of the teacher and the
discriminator (LoRA, predictor, heads), plus ``teacher_lora/``. At the end: ``teacher_lora/``
(``SlimDiffSRTeacher.from_trained(dir, base_folder)``) and, with ``export_merged``, ``teacher/``:
complete, LoRA merged, the folder distillation's ``teacher=`` takes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimdiffsr.data.degradation import DegradationConfig
from slimdiffsr.devices import mixed_precision_dtype
from slimdiffsr.losses.adversarial import discriminator_loss, generator_loss
from slimdiffsr.losses.reconstruction import LPIPSLoss, l2_loss
from slimdiffsr.losses.tv import tv_loss
from slimdiffsr.models.sd_folder import PROMPT_FILE
from slimdiffsr.models.teacher import SlimDiffSRTeacher, TeacherConfig
from slimdiffsr.training.config import ConfigError, TrainConfig, check_discriminator, need
from slimdiffsr.training.data import build_val_pairs, degrade_batch
from slimdiffsr.training.loop import StageRun, frozen_discriminator

log = logging.getLogger(__name__)


def _teacher_defaults() -> dict[str, Any]:
    return {k: v for k, v in TeacherConfig().to_dict().items() if k != "scale"}


@dataclass
class TeacherTrainConfig(TrainConfig):
    """Settings of ``training/train_teacher.py`` (paper: AdamW 2e-4, weight decay 0.01, 25k
    steps, batch 2, 256 crops, bf16, gradient clip 1)."""

    pretrained_model_name_or_path: str | None = None  # local SD-2.x diffusers folder
    estimator_path: str | None = None  # stage 0's OUT/estimator (adaptive mode)
    random_init: str | None = None  # tiny | sd2: random SD-shaped weights (tests, benchmarks)
    teacher_config: dict[str, Any] = field(default_factory=_teacher_defaults)  # TeacherConfig
    loss_l2: float = 1.0
    loss_lpips: float = 2.5
    loss_adv: float = 0.25
    loss_tv: float = 0.1
    lpips_weights: str | None = None  # a complete LPIPS state dict (weights tool: lpips_vgg)
    lpips_net: str = "vgg"
    discriminator: str = "dino"  # dino | tiny (random, tests only)
    dino_weights: str | None = None  # local dino_vitbase16_pretrain.pth
    discriminator_learning_rate: float | None = None  # None: learning_rate
    export_merged: bool = True
    benchmark: bool = False  # write benchmark.json (steps/s, peak memory)
    learning_rate: float = 2e-4
    adam_weight_decay: float = 0.01
    train_batch_size: int = 2
    max_train_steps: int = 25_000
    mixed_precision: str = "bf16"
    output_dir: str = "runs/teacher"
    checkpoints_total_limit: int | None = 3
    val_max_images: int | None = 4

    def validate(self) -> TeacherTrainConfig:
        super().validate()
        try:
            tcfg = self.teacher_model_config()
        except ValueError as e:
            raise ConfigError(f"teacher_config: {e}") from e
        need(self.random_init in (None, "tiny", "sd2"),
             f"random_init must be null, tiny or sd2, got {self.random_init!r}")  # fmt: skip
        if self.random_init is None:
            need(bool(self.pretrained_model_name_or_path),
                 "pretrained_model_name_or_path (a local SD-2.x diffusers folder) is required")  # fmt: skip
            need(tcfg.timestep_mode != "adaptive" or bool(self.estimator_path),
                 "estimator_path (stage-0 output, OUT/estimator) is required in adaptive mode")  # fmt: skip
            need(not self.loss_lpips or self.lpips_weights is not None,
                 "loss_lpips > 0 needs lpips_weights (a local file; nothing is downloaded)")  # fmt: skip
        # random_init: a random ViT-B/16 stands in for DINO (benchmarks)
        check_discriminator(
            self.discriminator, self.loss_adv, self.dino_weights or self.random_init
        )
        need(self.crop_size % (8 * self.scale) == 0,
             f"crop_size {self.crop_size} must be a multiple of 8 x scale")  # fmt: skip
        return self

    def teacher_model_config(self) -> TeacherConfig:
        return TeacherConfig.from_dict({**self.teacher_config, "scale": self.scale})


def encode_empty_prompt(folder: Path) -> torch.Tensor:
    """Encode "" once with the folder's CLIP text encoder (SD-2.x: last hidden state, 1x77xD)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
    enc = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", local_files_only=True)
    ids = tok(
        "", padding="max_length", max_length=tok.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids  # fmt: skip
    with torch.no_grad():
        return enc(ids)[0].float()


def build_teacher(cfg: TeacherTrainConfig, weight_dtype: torch.dtype) -> SlimDiffSRTeacher:
    """The teacher to train: from the SD folder, or random SD-shaped weights (``random_init``)."""
    from slimdiffsr.models.uncertainty import UncertaintyEstimator

    tcfg = cfg.teacher_model_config()
    adaptive = tcfg.timestep_mode == "adaptive"
    if cfg.random_init is not None:
        from slimdiffsr.testing import random_components

        unet, vae, prompt, abar = random_components(cfg.random_init, cfg.seed)
        torch.nn.Module.to(unet, weight_dtype)  # plain cast; nothing here must stay float32
        torch.nn.Module.to(vae, weight_dtype)
        est = UncertaintyEstimator() if adaptive else None
        return SlimDiffSRTeacher(unet, vae, prompt, abar, tcfg, est)
    folder = Path(cfg.pretrained_model_name_or_path)
    has_encoder = (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir()
    missing = not (folder / PROMPT_FILE).is_file()
    prompt = encode_empty_prompt(folder) if missing and has_encoder else None
    est = cfg.estimator_path if adaptive else None
    return SlimDiffSRTeacher.from_pretrained(folder, tcfg, est, prompt, weight_dtype)


def build_lpips(cfg: TeacherTrainConfig) -> LPIPSLoss | None:
    if not cfg.loss_lpips:
        return None
    weights = cfg.lpips_weights
    if weights is None:  # random_init benchmarks: random LPIPS weights
        import lpips

        weights = Path(cfg.output_dir) / f"lpips_random_{cfg.lpips_net}.pth"
        weights.parent.mkdir(parents=True, exist_ok=True)
        net = lpips.LPIPS(pretrained=False, net=cfg.lpips_net, pnet_rand=True, verbose=False)
        torch.save(net.state_dict(), weights)
    return LPIPSLoss(weights, net=cfg.lpips_net)


class TeacherRun(StageRun):
    """Stage 1 from a :class:`TeacherTrainConfig`; :meth:`train` runs it."""

    tracker_name = "teacher"

    def __init__(self, cfg: TeacherTrainConfig) -> None:
        from slimdiffsr.models.discriminator import DinoDiscriminator

        super().__init__(cfg)
        acc = self.accelerator
        self.build_data()
        self.deg = DegradationConfig.preset(cfg.degradation)
        self.tcfg = cfg.teacher_model_config()
        weight_dtype = mixed_precision_dtype(acc.mixed_precision)
        teacher = build_teacher(cfg, weight_dtype)
        self.lpips = build_lpips(cfg)
        if self.lpips is not None:
            self.lpips.to(acc.device)
        self.teacher, _ = self.prepare(
            teacher, self.adam(teacher.parameters(), decoupled=True), partial=True
        )
        self.disc = None
        if cfg.loss_adv:
            tiny = cfg.discriminator == "tiny"
            disc = DinoDiscriminator.tiny() if tiny else DinoDiscriminator(cfg.dino_weights)
            disc.backbone.to(weight_dtype)
            opt = self.adam(disc.parameters(), cfg.discriminator_learning_rate, decoupled=True)
            self.disc, _ = self.prepare(disc, opt, partial=True)
        self.val_pairs = build_val_pairs(cfg) if acc.is_main_process else []
        self.start()

    def micro_step(self, hr01: torch.Tensor, micro: int) -> dict[str, torch.Tensor]:
        """``L_T = w_l2 MSE + w_lpips LPIPS + w_adv L_adv + w_tv TV(sigma_hat)``, then one D step."""
        cfg, acc = self.cfg, self.accelerator
        lr, hr = degrade_batch(hr01, cfg.scale, self.deg, cfg.seed, micro, acc.process_index)
        with acc.autocast():
            out = self.teacher(lr, hr=hr if self.tcfg.predictor_latent == "z_h" else None)
            terms = {"l2": l2_loss(out.image, hr)}
            weights = {"l2": cfg.loss_l2, "lpips": cfg.loss_lpips, "adversarial": cfg.loss_adv}
            if self.lpips is not None:
                terms["lpips"] = self.lpips(out.image, hr)
            if self.disc is not None:  # no DDP hooks: D's grads are not wanted here
                with frozen_discriminator(acc.unwrap_model(self.disc)) as disc:
                    terms["adversarial"] = generator_loss(disc(out.image))
            if cfg.loss_tv and self.tcfg.timestep_mode == "adaptive":
                terms["tv"], weights["tv"] = tv_loss(out.log_sigma.exp()), cfg.loss_tv
            loss = sum(weights[k] * v for k, v in terms.items())
        acc.backward(loss)
        terms = {k: v.detach() for k, v in terms.items()}
        if self.disc is not None:
            with acc.autocast():  # one forward on [real; fake] (DDP-friendly)
                both = self.disc(torch.cat([hr, out.image.detach().to(hr.dtype)]))
                n = hr.shape[0]
                d_loss = discriminator_loss([x[:n] for x in both], [x[n:] for x in both])
            acc.backward(d_loss)
            terms["disc"] = d_loss.detach()
        return {**terms, "loss": loss.detach(), "t": out.timestep.float().mean().detach()}

    def validate(self, step: int) -> dict[str, float]:
        """PSNR-Y (SR and bicubic), LPIPS and the mean t over the fixed pairs; a sample grid."""
        teacher = self.accelerator.unwrap_model(self.teacher)
        was_training = teacher.training
        teacher.eval()
        need_hr = self.tcfg.predictor_latent == "z_h"

        def predict(lr: torch.Tensor, hr: torch.Tensor):
            out = teacher(lr, hr=hr if need_hr else None)
            return out.image, {"t": out.timestep.float().mean().item()}

        try:
            return self.validate_pairs(step, self.val_pairs, predict, self.lpips)
        finally:
            teacher.train(was_training)

    def save_artifacts(self, folder: Path, step: int, final: bool) -> Path | None:
        """``teacher_lora/`` always; at the end also the merged ``teacher/`` (or, in benchmark
        mode, only ``benchmark.json``)."""
        cfg = self.cfg
        teacher = self.accelerator.unwrap_model(self.teacher)
        if final and cfg.benchmark:
            report = benchmark_report(self.step_times, cfg, self.accelerator)
            (folder / "benchmark.json").write_text(json.dumps(report, indent=2))
            print(json.dumps(report))
            return None
        out = teacher.save_trained(folder / "teacher_lora")
        if final and cfg.export_merged:
            out = teacher.export_merged(folder / "teacher")
        return out


def benchmark_report(step_times: list[float], cfg: TeacherTrainConfig, accelerator) -> dict:
    """Steps/s after a 5-step warm-up, and peak GPU memory."""
    timed = step_times[5:] if len(step_times) > 10 else step_times
    report: dict[str, Any] = {
        "steps": len(step_times),
        "timed_steps": len(timed),
        "steps_per_s": len(timed) / sum(timed),
        "batch": cfg.train_batch_size,
        "crop": cfg.crop_size,
        "mixed_precision": accelerator.mixed_precision,
        "random_init": cfg.random_init,
        "device": str(accelerator.device),
    }
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return report


# ``--benchmark``: 50 bf16 steps at 256x256 on random SD-2.x-sized weights (the GPU check)
BENCHMARK: list[tuple[str, Any]] = [
    ("random_init", "sd2"), ("synthetic_data", True), ("crop_size", 256),
    ("dataloader_num_workers", 2), ("val_max_images", 0), ("max_train_steps", 50),
    ("train_batch_size", 2), ("mixed_precision", "bf16"), ("checkpointing_steps", 0),
    ("validation_steps", 0), ("export_merged", False), ("benchmark", True),
    ("report_to", "none"),
]  # fmt: skip


def run(cfg: TeacherTrainConfig) -> dict[str, Any]:
    """Build and train (the whole of ``training/train_teacher.py`` after argument parsing)."""
    return TeacherRun(cfg).train()


__all__ = [
    "BENCHMARK",
    "TeacherRun",
    "TeacherTrainConfig",
    "benchmark_report",
    "build_teacher",
    "encode_empty_prompt",
    "run",
]
