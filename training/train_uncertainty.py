"""Stage 0: train the latent uncertainty estimator U (method.md section 4.2).

Real run (SD-2.x-base or sd-turbo folder on disk; paper recipe: Adam 1e-4, 20k steps, batch 16,
256 crops)::

    python training/train_uncertainty.py \\
        --pretrained_model_name_or_path /models/sd-turbo \\
        --output_dir runs/uncertainty-x4 \\
        train_data=training/splits/shared_data.json scale=4

``key=value`` (or ``--set key=value``) overrides any key of
``slimdiffsr.training.uncertainty.UncertaintyTrainConfig``, e.g. ``estimator.hidden_channels=32``.
Writes ``config.yaml``, ``checkpoint-{step}/`` (Accelerate state and ``estimator/``; resume with
``--resume_from_checkpoint latest``), ``validation.jsonl`` and the final ``estimator/``, the input
of ``training/train_teacher.py estimator_path=OUT/estimator``.
"""

from __future__ import annotations

import logging
import sys

from slimdiffsr.training.args import parse_training_args, run_script
from slimdiffsr.training.uncertainty import UncertaintyTrainConfig, run


def parse_args(argv: list[str] | None = None) -> UncertaintyTrainConfig:
    return parse_training_args(UncertaintyTrainConfig, argv, __doc__)


def main(cfg: UncertaintyTrainConfig) -> int:
    return run_script(run, cfg)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(parse_args()))
