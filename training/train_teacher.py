"""Stage 1: train the uncertainty-guided one-step teacher (method.md sections 4.1-4.5).

Real run (paper recipe: AdamW 2e-4, weight decay 0.01, 25k steps, batch 2, 256 crops, bf16,
gradient clip 1)::

    python training/train_teacher.py \\
        --pretrained_model_name_or_path /models/sd-turbo \\
        --output_dir runs/teacher-x4 \\
        estimator_path=runs/uncertainty-x4/estimator \\
        lpips_weights=~/.cache/slimdiffsr/weights/lpips_vgg.safetensors \\
        dino_weights=/models/dino_vitbase16_pretrain.pth \\
        train_data=training/splits/shared_data.json

``key=value`` (or ``--set key=value``) overrides any key of
``slimdiffsr.training.teacher.TeacherTrainConfig``; ``teacher_config.timestep_mode=fixed`` trains
the fixed-t ablation (no estimator needed). Outputs: ``checkpoint-{step}/`` (Accelerate state with
the trainable tensors only, and ``teacher_lora/``; ``--resume_from_checkpoint latest`` resumes
exactly), ``samples/``, ``validation.jsonl``, and at the end ``teacher_lora/`` (LoRA + predictor +
estimator on top of the base folder) and ``teacher/`` (complete, LoRA merged: ``training/distill.py
--teacher OUT/teacher``; its ``unet/`` is the student builder's start).

``--benchmark`` runs 50 steps at 256x256 in bf16 on random SD-2.x-sized weights and reports
steps/s and peak memory (the GPU check of issue 6).
"""

from __future__ import annotations

import logging
import sys

from slimdiffsr.training.args import build_parser, config_from_args, run_script
from slimdiffsr.training.config import ConfigError
from slimdiffsr.training.teacher import BENCHMARK, TeacherTrainConfig, run


def parse_args(argv: list[str] | None = None) -> TeacherTrainConfig:
    p = build_parser(TeacherTrainConfig, __doc__)
    p.add_argument(
        "--benchmark", action="store_true", help="50 bf16 steps on random SD-2.x-sized weights"
    )
    args = p.parse_intermixed_args(argv)  # key=value may follow any flag
    preset = BENCHMARK if args.benchmark else ()  # the command line still overrides it
    try:
        return config_from_args(TeacherTrainConfig, args, preset=preset)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def main(cfg: TeacherTrainConfig) -> int:
    return run_script(run, cfg)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(parse_args()))
