"""The command line of every training script: ``--config``, ``key=value`` overrides and the flags
diffusers' training examples use, for any :class:`~slimdiffsr.training.config.TrainConfig`.

Precedence: the config's defaults, then ``--config FILE``, then the flags, then ``key=value``
overrides (positional, or ``--set key=value`` as the teacher stages' docs spell them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from slimdiffsr.devices import MIXED_PRECISIONS
from slimdiffsr.errors import SlimDiffSRError
from slimdiffsr.training.config import ConfigError, TrainConfig, load_config

C = TypeVar("C", bound=TrainConfig)

# flag -> type, for the keys a config class has (names as in diffusers' training examples)
FLAGS: dict[str, type] = {
    "pretrained_model_name_or_path": str,
    "output_dir": str,
    "max_train_steps": int,
    "train_batch_size": int,
    "learning_rate": float,
    "seed": int,
}


def build_parser(cls: type[TrainConfig], description: str | None) -> argparse.ArgumentParser:
    """A parser with ``--config``, the common flags ``cls`` has and ``key=value`` overrides."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=None, help="YAML config file")
    known = {f.name for f in fields(cls)}
    for name, kind in FLAGS.items():
        if name in known:
            p.add_argument(f"--{name}", type=kind, default=None, help=f"same as {name}=...")
    p.add_argument("--mixed_precision", choices=MIXED_PRECISIONS, default=None)
    p.add_argument("--resume", "--resume_from_checkpoint", dest="resume_from_checkpoint",
                   default=None, help='"latest" or a checkpoint folder')  # fmt: skip
    p.add_argument("--set", dest="set_overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="same as a positional key=value; repeatable")  # fmt: skip
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override any config key")
    return p


def config_from_args(
    cls: type[C],
    args: argparse.Namespace,
    extra: dict[str, Any] | None = None,
    preset: Sequence[tuple[str, Any]] = (),
) -> C:
    """The config the parsed arguments describe; ``extra`` holds script-specific flags (None:
    not given), ``preset`` settings applied after the file and before everything else (a mode
    such as ``--benchmark``). Raises :class:`ConfigError`."""
    flags = {
        name: getattr(args, name)
        for name in [*FLAGS, "mixed_precision", "resume_from_checkpoint"]
        if getattr(args, name, None) is not None
    }
    flags |= {k: v for k, v in (extra or {}).items() if v is not None}
    overrides = [*preset, *flags.items(), *args.set_overrides, *args.overrides]
    return load_config(args.config, overrides, cls)


def run_script(run: Callable[[C], dict[str, Any]], cfg: C) -> int:
    """A training script's ``main``: run the stage; a user error (wrong setting, missing file) is
    one line on stderr and exit status 2, a bug a traceback."""
    try:
        summary = run(cfg)
    except (SlimDiffSRError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary.get("model"):
        print(f"model written to {summary['model']}")
    return 0


def parse_training_args(
    cls: type[C], argv: list[str] | None = None, description: str | None = None
) -> C:
    """Parse a training script's command line; a config error exits 2 with one line."""
    args = build_parser(cls, description).parse_intermixed_args(argv)
    try:
        return config_from_args(cls, args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e


__all__ = ["build_parser", "config_from_args", "parse_training_args", "run_script"]
