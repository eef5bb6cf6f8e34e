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

import logging
import sys

from slimdiffsr.errors import SlimDiffSRError
from slimdiffsr.training.args import build_parser, config_from_args, run_script
from slimdiffsr.training.config import DistillConfig


def parse_args(argv: list[str] | None = None) -> DistillConfig:
    """Command line -> validated config (flags override the file; ``key=value`` override both)."""
    p = build_parser(DistillConfig, __doc__)
    p.add_argument(
        "--teacher", default=None, help="teacher folder (omit: reconstruction-only training)"
    )
    p.add_argument(
        "--no-dis", dest="no_dis", action="store_true", help="ablation: no feature distillation"
    )
    p.add_argument(
        "--no-mmd", dest="no_mmd", action="store_true", help="ablation: feature MSE only"
    )
    args = p.parse_intermixed_args(argv)  # key=value may follow any flag
    extra = {"teacher": args.teacher, "no_dis": args.no_dis or None, "no_mmd": args.no_mmd or None}
    return config_from_args(DistillConfig, args, extra)


def main(cfg: DistillConfig) -> int:
    from slimdiffsr.training.distill import run

    return run_script(run, cfg)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = parse_args()
    except SlimDiffSRError as e:  # ConfigError: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(config))
