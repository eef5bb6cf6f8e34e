"""Train a SlimDiffSR student: distillation from a frozen teacher, or reconstruction-only.

Usage::

    python training/distill.py --config training/configs/default_nano_x4.yaml
    python training/distill.py --config cfg.yaml --teacher runs/teacher learning_rate=1e-4 crop_size=128
    accelerate launch --num_processes 2 training/distill.py --config cfg.yaml   # DDP
    python training/distill.py --config cfg.yaml --resume latest                 # after a crash

``key=value`` overrides any config key (values are YAML: ``bands=[1,2,3]``, ``teacher=null``);
unknown keys fail. Outputs in ``output_dir``: ``config.yaml``, ``checkpoint-{step}/`` (Accelerate
state + the student model file), ``samples/step-*.png``, ``logs/`` (TensorBoard) and the final
``{model_name}.safetensors``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from slimdiffsr.errors import SlimDiffSRError
from slimdiffsr.training.config import DistillConfig, load_config


def parse_args(argv: list[str] | None = None) -> DistillConfig:
    """Command line -> validated config (flags override the file; ``key=value`` override both)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, default=None, help="YAML config file")
    p.add_argument(
        "--teacher", default=None, help="teacher folder (omit: reconstruction-only training)"
    )
    p.add_argument("--output_dir", default=None)
    p.add_argument("--resume", "--resume_from_checkpoint", dest="resume", default=None,
                   help='"latest" or a checkpoint folder')  # fmt: skip
    p.add_argument("--max_train_steps", type=int, default=None)
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    p.add_argument(
        "--no-dis", dest="no_dis", action="store_true", help="ablation: no feature distillation"
    )
    p.add_argument(
        "--no-mmd", dest="no_mmd", action="store_true", help="ablation: feature MSE only"
    )
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    flags = {
        "teacher": args.teacher,
        "output_dir": args.output_dir,
        "resume_from_checkpoint": args.resume,
        "max_train_steps": args.max_train_steps,
        "mixed_precision": args.mixed_precision,
    }
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    overrides += [f"{k}=true" for k in ("no_dis", "no_mmd") if getattr(args, k)]
    return load_config(args.config, overrides + list(args.overrides))


def main(cfg: DistillConfig) -> int:
    from slimdiffsr.training.distill import run

    try:
        summary = run(cfg)
    except (SlimDiffSRError, FileNotFoundError) as e:  # user errors: one line; bugs: traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary.get("model"):
        print(f"model written to {summary['model']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = parse_args()
    except SlimDiffSRError as e:  # ConfigError: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(config))
