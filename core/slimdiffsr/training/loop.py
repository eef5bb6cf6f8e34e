"""The training loop every stage shares (stage 0, stage 1, distillation), on Accelerate.

A stage subclasses :class:`StageRun`: it builds its models and optimizers, registers them with
:meth:`StageRun.prepare`, and implements :meth:`~StageRun.micro_step` (forward + backward of one
micro-batch), :meth:`~StageRun.validate` and :meth:`~StageRun.save_artifacts` (the usable files of
a checkpoint or of the end of the run). The base class does the rest, identically for all:

- ``checkpoint-{step}/`` folders through ``accelerator.save_state`` (weights, optimizers, RNG and
  :class:`TrainState`), rotated to ``checkpoints_total_limit``; ``resume_from_checkpoint`` (a
  folder or ``latest``) continues exactly, because the data stream and every random draw are pure
  functions of the seed and the step (``training.data``). Modules registered as *partial* (a
  frozen SD UNet with LoRA, a frozen DINO backbone with heads) keep only their trainable tensors
  in a checkpoint, like diffusers' LoRA training scripts.
- the learning rate as a pure function of the step (``lr_scheduler``, ``lr_warmup_steps``): no
  scheduler state to checkpoint, the same schedule on one process or many, exact on resume.
- gradient accumulation, clipping, one optimizer step per optimizer and step, non-finite losses
  stop the run, logging to the tracker every ``logging_steps``, validation every
  ``validation_steps``, a refusal to write into an output folder that already holds checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimdiffsr.training.config import ConfigError, TrainConfig, save_config
from slimdiffsr.training.data import build_train_set, step_batches

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainState:
    """What Accelerate does not track: the step and decisions taken during training (such as
    distillation's ``mse_normalize``); saved in every checkpoint."""

    step: int = 0
    decisions: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, **self.decisions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.step = int(state.pop("step"))
        self.decisions = state


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


def rotate_checkpoints(output_dir: str | Path, keep: int | None) -> None:
    """Remove the oldest checkpoints so that ``keep`` remain (None: keep all)."""
    if keep is None:
        return
    old = list_checkpoints(output_dir)
    for p in old[: max(0, len(old) - keep)]:
        shutil.rmtree(p, ignore_errors=True)


def resume_path(cfg: TrainConfig) -> Path | None:
    """The checkpoint to resume from: a folder, the newest for ``latest`` (None if there is none
    yet: a fresh start), or None without ``resume_from_checkpoint``."""
    spec = cfg.resume_from_checkpoint
    if spec is None:
        return None
    if spec == "latest":
        ckpts = list_checkpoints(cfg.output_dir)
        if not ckpts:
            log.warning("no checkpoint in %s: starting a new run", cfg.output_dir)
        return ckpts[-1] if ckpts else None
    return Path(spec)


def lr_factor(kind: str, step: int, warmup: int, total: int) -> float:
    """Multiplier of the base learning rate for (0-based) ``step`` of ``total``: linear warm-up
    over ``warmup`` steps, then constant, cosine or linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return 1.0 - progress
    raise ConfigError(f"unknown lr_scheduler {kind!r}")


def freeze_unused(module: nn.Module, total: torch.Tensor) -> int:
    """Stop training the tensors that ``total`` (a scalar from one forward pass of ``module``)
    does not depend on: the published layout keeps unused modules (``time_embedding``), Adam never
    moves them, and DDP fails on parameters without gradients. Returns how many were frozen."""
    total.backward()
    frozen = 0
    for p in module.parameters():
        if p.requires_grad and p.grad is None:
            p.requires_grad_(False)
            frozen += 1
        p.grad = None
    return frozen


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def grid_image(rows: list[torch.Tensor]) -> np.ndarray | None:
    """Rows of images side by side (C, H, W) in [0, 1] (first three bands) as (H, W, 3) uint8."""
    if not rows:
        return None
    w = max(s.shape[-1] for s in rows)
    out = []
    for s in rows:
        s = s[:3] if s.shape[0] >= 3 else s[:1].expand(3, -1, -1)
        out.append(torch.nn.functional.pad(s.float().cpu(), (0, w - s.shape[-1], 0, 2)))
    grid = torch.cat(out, dim=-2).clamp(0, 1)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def flat_config(cfg: TrainConfig) -> dict[str, Any]:
    """TensorBoard hparams accept scalars and strings only."""
    return {
        k: v if isinstance(v, int | float | str | bool) else str(v)
        for k, v in cfg.to_dict().items()
    }


@contextlib.contextmanager
def frozen_discriminator(disc: nn.Module) -> Iterator[nn.Module]:
    """For the generator's adversarial term: D's parameters get no gradients from it; afterwards
    only the heads train again (the ViT backbone stays frozen)."""
    disc.requires_grad_(False)
    try:
        yield disc
    finally:
        for name, p in disc.named_parameters():
            if not name.startswith("backbone."):
                p.requires_grad_(True)


class StageRun:
    """Accelerate plumbing of one training stage; see the module docstring."""

    tracker_name = "train"
    validate_at_start = False  # validate the untrained model at step 0

    def __init__(self, cfg: TrainConfig) -> None:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        self.cfg = cfg
        if cfg.resume_from_checkpoint is None and list_checkpoints(cfg.output_dir):
            raise ConfigError(
                f"output_dir {cfg.output_dir} already holds checkpoints; resume with "
                "--resume_from_checkpoint latest or choose another output_dir"
            )
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
        set_seed(cfg.seed)
        self.state = TrainState()
        self.optimizers: list[tuple[torch.optim.Optimizer, list[nn.Parameter]]] = []
        self.modules: list[nn.Module] = []  # what gradient accumulation synchronises
        self._partial: list[nn.Module] = []
        self.history: list[dict[str, float]] = []
        self.step_times: list[float] = []
        self.val_history: list[dict[str, float]] = []
        self.accelerator.register_save_state_pre_hook(self._keep_trainable)

    # -- to implement -------------------------------------------------------------------------
    def micro_step(self, hr01: torch.Tensor, micro: int) -> dict[str, torch.Tensor]:
        """Forward and backward of one micro-batch of HR crops in [0, 1]; returns loss terms."""
        raise NotImplementedError

    def validate(self, step: int) -> dict[str, float]:
        """Metrics on the fixed validation pairs (main process); {} when there are none."""
        return {}

    def save_artifacts(self, folder: Path, step: int, final: bool) -> Path | None:
        """Write the stage's usable output (main process only) into ``folder``."""
        return None

    def finish(self) -> dict[str, Any]:
        """Collective checks after the last step (all processes); extra summary entries."""
        return {}

    # -- setup --------------------------------------------------------------------------------
    def build_data(self) -> None:
        self.train_set = build_train_set(self.cfg)

    def prepare(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        partial: bool = False,
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """``accelerator.prepare`` a trained module with its optimizer, in checkpoint order.
        ``partial``: checkpoints leave out its frozen parameters (buffers, such as spectral-norm
        vectors that change in training, are kept)."""
        module, optimizer = self.accelerator.prepare(module, optimizer)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])  # the base of the schedule
        params = [p for p in module.parameters() if p.requires_grad]
        self.optimizers.append((optimizer, params))
        self.modules.append(module)
        if partial:
            self._partial.append(module)
        return module, optimizer

    def start(self) -> None:
        """Register the state, write the effective config, start the tracker (after building)."""
        acc, cfg = self.accelerator, self.cfg
        acc.register_for_checkpointing(self.state)
        if acc.is_main_process:
            Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
            save_config(cfg, Path(cfg.output_dir) / "config.yaml")
            if cfg.report_to != "none":
                acc.init_trackers(self.tracker_name, config=flat_config(cfg))

    def adam(
        self, params: Iterable[nn.Parameter], lr: float | None = None, decoupled: bool = False
    ) -> torch.optim.Optimizer:
        """Adam (or AdamW) with the configured betas, epsilon and weight decay."""
        c = self.cfg
        kind = torch.optim.AdamW if decoupled else torch.optim.Adam
        return kind(
            [p for p in params if p.requires_grad],
            lr=lr or c.learning_rate,
            betas=(c.adam_beta1, c.adam_beta2),
            eps=c.adam_epsilon,
            weight_decay=c.adam_weight_decay,
        )

    def _keep_trainable(self, models: list[nn.Module], weights: list[dict], _dir: str) -> None:
        for i, m in enumerate(models):
            if any(m is p for p in self._partial):
                frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
                weights[i] = {k: v for k, v in weights[i].items() if k not in frozen}

    # -- checkpoints --------------------------------------------------------------------------
    def resume(self) -> int:
        path = resume_path(self.cfg)
        if path is None:
            return 0
        self.accelerator.load_state(str(path), strict=not self._partial)
        log.info("resumed from %s at step %d", path, self.state.step)
        return self.state.step

    def save_checkpoint(self, step: int) -> Path:
        """``checkpoint-{step}``: Accelerate state plus the stage's artifacts."""
        acc, cfg = self.accelerator, self.cfg
        path = Path(cfg.output_dir) / f"checkpoint-{step}"
        acc.wait_for_everyone()
        if acc.is_main_process and cfg.checkpoints_total_limit is not None:
            rotate_checkpoints(cfg.output_dir, max(0, cfg.checkpoints_total_limit - 1))
        acc.save_state(str(path))
        if acc.is_main_process:
            self.save_artifacts(path, step, final=False)
        acc.wait_for_everyone()
        return path

    # -- the loop -----------------------------------------------------------------------------
    def batches(self, start_batch: int) -> Iterator[torch.Tensor]:
        acc = self.accelerator
        return step_batches(
            self.train_set,
            self.cfg,
            acc.process_index,
            acc.num_processes,
            start_batch,
            pin_memory=acc.device.type == "cuda",
        )

    def train(self) -> dict[str, Any]:
        """Run to ``max_train_steps``; returns a summary (losses, validation, final file)."""
        from tqdm.auto import tqdm

        cfg, acc = self.cfg, self.accelerator
        step = self.resume()
        accum = cfg.gradient_accumulation_steps
        if step == 0 and self.validate_at_start:
            self.validate(0)
        batches = self.batches(start_batch=step * accum)
        bar = tqdm(
            total=cfg.max_train_steps,
            initial=step,
            disable=not acc.is_main_process,
            desc=self.tracker_name,
        )
        t_steps, step_time = 0, 0.0
        for m in self.modules:
            m.train()
        while step < cfg.max_train_steps:
            factor = lr_factor(cfg.lr_scheduler, step, cfg.lr_warmup_steps, cfg.max_train_steps)
            for opt, _ in self.optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["initial_lr"] * factor
            sums: dict[str, float] = {}
            t_step = time.perf_counter()
            grad_norm = None
            for a in range(accum):
                hr01 = next(batches).to(acc.device, non_blocking=True)
                with acc.accumulate(*self.modules):
                    terms = self.micro_step(hr01, step * accum + a)
                    for i, (opt, params) in enumerate(self.optimizers):
                        if acc.sync_gradients and cfg.max_grad_norm:
                            norm = acc.clip_grad_norm_(params, cfg.max_grad_norm)
                            grad_norm = norm if i == 0 else grad_norm
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
            if not all(math.isfinite(v) for v in sums.values()):
                raise FloatingPointError(f"non-finite loss at step {step + 1}: {sums}")
            step += 1
            t_steps += 1
            if acc.device.type == "cuda":
                torch.cuda.synchronize(acc.device)
            self.step_times.append(time.perf_counter() - t_step)
            step_time += self.step_times[-1]
            self.state.step = step
            if grad_norm is not None:
                sums["grad_norm"] = float(grad_norm)
            self.history.append({"step": step, **sums})
            bar.update(1)
            bar.set_postfix(loss=f"{sums.get('loss', float('nan')):.4f}")
            last = step == cfg.max_train_steps
            if step % cfg.logging_steps == 0 or last:
                rate = t_steps / max(1e-9, step_time)
                lr_now = self.optimizers[0][0].param_groups[0]["lr"] if self.optimizers else 0.0
                acc.log(
                    {f"train/{k}": v for k, v in sums.items()}
                    | {"train/steps_per_s": rate, "train/lr": lr_now},
                    step=step,
                )
            if cfg.validation_steps and (step % cfg.validation_steps == 0 or last):
                m = self.validate(step)
                if m:
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
            if cfg.checkpointing_steps and (step % cfg.checkpointing_steps == 0 or last):
                self.save_checkpoint(step)
        bar.close()
        acc.wait_for_everyone()
        final = None
        if acc.is_main_process:
            final = self.save_artifacts(Path(cfg.output_dir), step, final=True)
        extra = self.finish()
        acc.wait_for_everyone()
        acc.end_training()
        summary = {
            **extra,
            "step": step,
            "history": self.history,
            "validation": self.val_history,
            "model": final,
            "steps_per_s": t_steps / max(1e-9, step_time),
            "processes": acc.num_processes,
        }
        if acc.device.type == "cuda":
            summary["max_memory_gb"] = torch.cuda.max_memory_allocated(acc.device) / 2**30
        return summary

    @torch.no_grad()
    def validate_pairs(
        self,
        step: int,
        pairs: list[dict[str, Any]],
        predict: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
        lpips: nn.Module | None = None,
    ) -> dict[str, float]:
        """Score ``predict(lr, hr) -> (sr, extra)`` (all in [-1, 1]) on the fixed pairs: PSNR-Y
        with a ``scale`` border (:func:`~slimdiffsr.metrics.psnr_ssim.psnr_torch`, as
        ``slimdiffsr evaluate``) of SR and bicubic, LPIPS, the means of ``extra``; writes a
        [bicubic | SR | HR] grid PNG to ``samples/`` and logs everything."""
        from slimdiffsr.metrics.psnr_ssim import psnr_torch
        from slimdiffsr.models.bicubic import bicubic_upsample

        if not pairs or not self.accelerator.is_main_process:
            return {}
        cfg, dev = self.cfg, self.accelerator.device
        sums: dict[str, float] = {}
        rows = []
        for k, item in enumerate(pairs):
            lr, hr01 = item["lr"][None].to(dev) * 2 - 1, item["hr"][None].to(dev)
            with self.accelerator.autocast():
                sr, extra = predict(lr, hr01 * 2 - 1)
            sr01 = ((sr.float() + 1) / 2).clamp(0, 1)
            bic01 = ((bicubic_upsample(lr, cfg.scale) + 1) / 2).clamp(0, 1)
            y = hr01.shape[1] >= 3
            values = {
                "val/psnr_y": float(psnr_torch(sr01, hr01, cfg.scale, test_y_channel=y)[0]),
                "val/psnr_y_bicubic": float(
                    psnr_torch(bic01, hr01, cfg.scale, test_y_channel=y)[0]
                ),
                **{f"val/{n}": v for n, v in extra.items()},
            }
            if lpips is not None:
                values["val/lpips"] = float(lpips(sr01 * 2 - 1, hr01 * 2 - 1))
            for n, v in values.items():
                sums[n] = sums.get(n, 0.0) + v / len(pairs)
            if k < cfg.num_sample_images:
                rows.append(torch.cat([bic01, sr01, hr01], dim=-1)[0])
        sums["val/psnr_y_gain"] = sums["val/psnr_y"] - sums["val/psnr_y_bicubic"]
        grid = grid_image(rows)
        if grid is not None:
            save_png(grid, Path(cfg.output_dir) / "samples" / f"step-{step:07d}.png")
            if cfg.report_to == "tensorboard":
                try:
                    tracker = self.accelerator.get_tracker("tensorboard")
                    tracker.log_images({"val/samples": grid}, step=step, dataformats="HWC")
                except Exception as e:  # pragma: no cover - logging must not stop training
                    log.warning("could not log sample images: %s", e)
        return self.record_validation(step, sums)

    def record_validation(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Log validation metrics to the tracker, the history and ``validation.jsonl``."""
        self.accelerator.log(metrics, step=step)
        self.val_history.append({"step": step, **metrics})
        append_jsonl(Path(self.cfg.output_dir) / "validation.jsonl", {"step": step, **metrics})
        return metrics


__all__ = [
    "StageRun",
    "TrainState",
    "append_jsonl",
    "flat_config",
    "frozen_discriminator",
    "grid_image",
    "list_checkpoints",
    "resume_path",
    "rotate_checkpoints",
    "save_png",
]
