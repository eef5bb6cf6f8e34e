"""Training configuration: flat, typed dataclasses read from YAML plus ``key=value`` overrides.

One loader serves every stage (:class:`DistillConfig` here; the teacher stages' configs in
``training.teacher`` and ``training.uncertainty``), all built on :class:`TrainConfig`, which holds
what the stages share: data, optimiser, precision, checkpoints and logging. Every key has a default
from method.md (paper values, or ours where the paper is silent), so a config file lists only what
differs. Unknown keys fail loudly with the closest known names: a typo such as ``learning_rate``
silently falling back to a default costs a whole training run. Relative paths are resolved
against the working directory.

YAML is read with YAML 1.2 booleans (only ``true``/``false``): ``mixed_precision: no`` is the
string ``"no"``, never ``False``. A string key given a boolean (``mixed_precision: false``) reads
it as ``"no"``/``"yes"``, and a boolean key accepts ``yes``/``no``/``on``/``off``. Dict-valued keys
take dotted overrides: ``teacher_config.timestep_mode=fixed``.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from slimdiffsr.devices import MIXED_PRECISIONS
from slimdiffsr.errors import InputError

DEGRADATIONS = ("realesrgan", "rs", "rs16", "bicubic")
LR_SCHEDULERS = ("constant", "cosine", "linear")
AUGMENTS = ("none", "hflip", "dihedral")
_TRUE, _FALSE = ("true", "yes", "on", "y"), ("false", "no", "off", "n")


class ConfigError(InputError):
    """A configuration key or value cannot be used."""


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: ``no``/``off``/``yes``/``on`` stay strings."""


_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    """YAML with 1.2 booleans (see the module docstring); the one parser of config text."""
    return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader: no object construction


@dataclass
class TrainConfig:
    """Settings every training stage shares; a stage subclasses it and may change defaults."""

    # -- data -------------------------------------------------------------------------------
    train_data: Any = (
        "training/splits/shared_data.json"  # folder, glob, list file, split .json, or a list
    )
    val_data: Any = None  # same forms; None: the val list of a split .json train_data
    synthetic_data: bool = False  # smooth random crops instead of files (tests, benchmarks)
    bands: list[int] | None = field(default_factory=lambda: [1, 2, 3])  # 1-based
    value_contract: str | None = None  # e.g. "fixed:0:10000"; None: each dtype's natural contract
    crop_size: int = 256
    pad_small_images: bool = True  # reflect-101 pad images smaller than the crop
    augment: str = "hflip"  # none | hflip | dihedral (flips and 90-degree rotations)
    scale: int = 4
    degradation: str = "realesrgan"  # realesrgan | rs | rs16 | bicubic
    val_crop_size: int | None = 256
    val_max_images: int | None = None  # None: all; 0: no validation
    dataloader_num_workers: int = 0

    # -- optimisation ---------------------------------------------------------------------------
    learning_rate: float = 5e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    adam_weight_decay: float = 0.0
    lr_scheduler: str = "constant"  # constant | cosine | linear (decay to 0 at max_train_steps)
    lr_warmup_steps: int = 0  # linear warm-up from 0 before the schedule
    max_grad_norm: float = 1.0
    train_batch_size: int = 16  # per process
    gradient_accumulation_steps: int = 1
    max_train_steps: int = 100_000
    mixed_precision: str = "no"  # no | fp16 | bf16
    cpu: bool = False  # force the CPU even when a GPU is present
    num_threads: int | None = None  # torch intra-op threads (1 on small shared CPUs); None: default
    seed: int = 0

    # -- outputs ------------------------------------------------------------------------------
    output_dir: str = "runs/train"
    checkpointing_steps: int = 1000  # also at the last step; 0: never
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint folder
    validation_steps: int = 1000  # also at the last step; 0: never
    num_sample_images: int = 4
    logging_steps: int = 10
    report_to: str = "tensorboard"  # tensorboard | none

    def validate(self) -> TrainConfig:
        """Check values that do not depend on files; raises :class:`ConfigError`."""
        need(self.scale in (2, 4, 8), f"scale must be 2, 4 or 8, got {self.scale}")
        need(self.crop_size > 0 and self.crop_size % self.scale == 0,
             f"crop_size {self.crop_size} must be a positive multiple of scale {self.scale}")  # fmt: skip
        if self.val_crop_size is not None:
            need(self.val_crop_size % self.scale == 0,
                 f"val_crop_size {self.val_crop_size} must be a multiple of scale {self.scale}")  # fmt: skip
        need(self.degradation in DEGRADATIONS,
             f"degradation must be one of {', '.join(DEGRADATIONS)}, got {self.degradation!r}")  # fmt: skip
        need(self.augment in AUGMENTS,
             f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")  # fmt: skip
        need(self.mixed_precision in MIXED_PRECISIONS,
             f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")  # fmt: skip
        need(self.lr_scheduler in LR_SCHEDULERS,
             f"lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {self.lr_scheduler!r}")  # fmt: skip
        need(0 <= self.lr_warmup_steps < self.max_train_steps,
             f"lr_warmup_steps must be in [0, max_train_steps), got {self.lr_warmup_steps}")  # fmt: skip
        need(self.report_to in ("tensorboard", "none"),
             f"report_to must be tensorboard or none, got {self.report_to!r}")  # fmt: skip
        for k in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps",
                  "logging_steps"):  # fmt: skip
            need(getattr(self, k) >= 1, f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("checkpointing_steps", "validation_steps", "dataloader_num_workers"):
            need(getattr(self, k) >= 0, f"{k} must be >= 0, got {getattr(self, k)}")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        if self.resume_from_checkpoint not in (None, "latest"):
            need(Path(self.resume_from_checkpoint).is_dir(),
                 f"resume_from_checkpoint: no checkpoint folder at {self.resume_from_checkpoint}")  # fmt: skip
        return self

    @property
    def channels(self) -> int:
        """Bands of the synthetic data (real data: the dataset says)."""
        return len(self.bands) if self.bands else 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def need(ok: bool, msg: str) -> None:
    """Raise :class:`ConfigError` with ``msg`` unless ``ok``."""
    if not ok:
        raise ConfigError(msg)


@dataclass
class DistillConfig(TrainConfig):
    """All settings of ``training/distill.py`` (method.md sections 5, 6 and 10)."""

    # -- data -------------------------------------------------------------------------------
    band_names: list[str] = field(default_factory=lambda: ["red", "green", "blue"])
    val_batch_size: int = 4

    # -- student ----------------------------------------------------------------------------
    student_preset: str = "nano"
    student_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {no_qgam: true}
    init_autoencoder: str | None = None  # folder with taef2_encoder.pth / taef2_decoder.pth
    init_student: str | None = None  # a model file (.safetensors) to fine-tune from
    model_name: str | None = None  # default: slimdiffsr-{preset}-x{scale}
    model_description: str = ""
    model_license: str = "MIT"

    # -- teacher and distillation -------------------------------------------------------------
    teacher: str | None = (
        None  # teacher folder; None: reconstruction-only training (method section 10)
    )
    teacher_dtype: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    no_dis: bool = False  # ablation No-Dis: no feature distillation
    no_mmd: bool = False  # ablation No-MMD: MSE only
    lambda_dis: float = 1.0
    lambda_mmd: float = 1.0
    mmd_tokens: int = 1024
    mmd_unbiased: bool = True
    mse_normalize: str = "auto"  # auto (method's step-0 check) | always | never

    # -- reconstruction losses ----------------------------------------------------------------
    loss_l1: float = 0.0
    loss_l2: float = 1.0
    loss_lpips: float = 0.0  # paper: 2.5 with a teacher (needs lpips_weights)
    lpips_weights: str | None = None
    lpips_net: str = "vgg"
    loss_adv: float = 0.0  # paper: 0.25 with a teacher; needs dino_weights
    dino_weights: str | None = None  # local DINO ViT-B/16 checkpoint for the discriminator
    discriminator: str = "dino"  # dino | tiny (random, tests only)

    # -- outputs ------------------------------------------------------------------------------
    output_dir: str = "runs/distill"
    validation_lpips: bool = False  # needs lpips_weights

    def validate(self) -> DistillConfig:
        super().validate()
        need(self.teacher_dtype in ("auto", "fp32", "fp16", "bf16"),
             f"teacher_dtype must be auto, fp32, fp16 or bf16, got {self.teacher_dtype!r}")  # fmt: skip
        need(self.mse_normalize in ("auto", "always", "never"),
             f"mse_normalize must be auto, always or never, got {self.mse_normalize!r}")  # fmt: skip
        need(self.mmd_tokens >= 1, f"mmd_tokens must be >= 1, got {self.mmd_tokens}")
        for k in ("loss_l1", "loss_l2", "loss_lpips", "lambda_dis", "lambda_mmd"):
            need(getattr(self, k) >= 0, f"{k} must be >= 0, got {getattr(self, k)}")
        need(self.loss_l1 + self.loss_l2 + self.loss_lpips > 0,
             "at least one reconstruction loss weight (loss_l1, loss_l2, loss_lpips) must be > 0")  # fmt: skip
        if self.loss_lpips > 0 or self.validation_lpips:
            need(self.lpips_weights is not None,
                 "loss_lpips > 0 or validation_lpips needs lpips_weights (a local file; nothing is downloaded)")  # fmt: skip
        check_discriminator(self.discriminator, self.loss_adv, self.dino_weights)
        if self.bands is not None:
            need(len(self.band_names) == len(self.bands),
                 f"band_names {self.band_names} must name each of bands {self.bands}")  # fmt: skip
        return self

    @property
    def uses_teacher(self) -> bool:
        return self.teacher is not None and not self.no_dis

    @property
    def name(self) -> str:
        return self.model_name or f"slimdiffsr-{self.student_preset}-x{self.scale}"


def check_discriminator(kind: str, weight: float, dino_weights: str | None) -> None:
    """The adversarial settings shared by stage 1 and distillation."""
    need(kind in ("dino", "tiny"), f"discriminator must be dino or tiny, got {kind!r}")
    need(weight >= 0, f"loss_adv must be >= 0, got {weight}")
    if weight > 0 and kind == "dino":
        need(dino_weights is not None,
             "loss_adv > 0 needs dino_weights (a local DINO ViT-B/16 file; nothing is downloaded)")  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
C = TypeVar("C")  # a config dataclass: TrainConfig's subclasses, or another stage's


def _coerce(cls: type, key: str, value: Any) -> Any:
    """Light type check. Ints are fine for floats; numeric strings too (YAML reads ``5e-5``
    without a dot as a string)."""
    hint = typing.get_type_hints(cls)[key]
    if hint is Any:
        return value
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
    else:
        args = (hint,)
    optional = type(None) in args
    allowed = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    if optional and str not in allowed and isinstance(value, str) and value.lower() == "none":
        value = None  # Python spelling of null, for non-string keys only
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} cannot be null")
    if isinstance(value, bool) and str in allowed and bool not in allowed:
        value = "yes" if value else "no"  # YAML 1.1 writers: mixed_precision: false
    if isinstance(value, str) and bool in allowed and value.lower() in _TRUE + _FALSE:
        value = value.lower() in _TRUE
    if isinstance(value, str) and str not in allowed and (float in allowed or int in allowed):
        try:
            value = float(value)
        except ValueError:
            pass
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if int in allowed and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"{key} must be {'/'.join(a.__name__ for a in allowed)}, got {value!r}")
    if not isinstance(value, allowed):
        names = "/".join(a.__name__ for a in allowed)
        raise ConfigError(f"{key} must be {names}, got {value!r} ({type(value).__name__})")
    return value


def _check_keys(cls: type, keys: Any, where: str) -> None:
    known = [f.name for f in fields(cls)]
    for k in keys:
        if k not in known:
            close = difflib.get_close_matches(k, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key {k!r} in {where}{hint}")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as YAML (``lr=1e-4``, ``bands=[1,2,3]``, ``teacher=null``,
    ``mixed_precision=no``); ``section.key=value`` sets one entry of a dict-valued key."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    try:
        value = read_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from e
    return key, value


def _set(cls: type, values: dict[str, Any], key: str, value: Any, where: str) -> None:
    """``values[key] = value``; ``section.entry`` keys (and mappings given for a section) update
    one entry of a dict-valued key. A section with a non-empty default knows its entries."""
    head, _, rest = key.partition(".")
    _check_keys(cls, [head], where)
    f = next(f for f in fields(cls) if f.name == head)
    default = f.default_factory() if callable(f.default_factory) else None
    if not rest and not (isinstance(value, dict) and default):
        values[head] = value
        return
    if typing.get_origin(typing.get_type_hints(cls)[head]) is not dict:
        raise ConfigError(f"{key!r} in {where}: {head} is not a section (dict-valued key)")
    entries = value if not rest else {rest: value}
    if default:
        unknown = sorted(set(entries) - set(default))
        if unknown:
            raise ConfigError(
                f"unknown config key {head}.{unknown[0]} in {where}; known: {sorted(default)}"
            )
        entries = {k: _coerce_entry(f"{head}.{k}", default[k], v) for k, v in entries.items()}
    current = values.get(head)
    base = (default or {}) if current is None else current
    values[head] = {**base, **entries}


def _coerce_entry(key: str, default: Any, value: Any) -> Any:
    """A section entry takes the type of its default (booleans: also yes/no/on/off)."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be bool, got {value!r}")
    elif isinstance(default, int | float):
        kind = type(default).__name__
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if math.isnan(number) or (kind == "int" and not number.is_integer()):
            raise ConfigError(f"{key} must be {kind}, got {value!r}")
        return int(number) if kind == "int" else number
    return value


Override = str | tuple[str, Any]


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[Override] | dict[str, Any] | None = None,
    cls: type[C] = DistillConfig,
) -> C:
    """Defaults of ``cls``, then the YAML file, then the overrides in order (``key=value`` text,
    or ``(key, value)`` pairs already typed, such as command-line flags); validated."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            doc = read_yaml(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(doc, dict):
            raise ConfigError(f"config file {p} must be a mapping of key: value")
        for k, v in doc.items():
            _set(cls, values, str(k), v, str(p))
    if isinstance(overrides, dict):
        overrides = list(overrides.items())
    for item in overrides or ():
        k, v = parse_override(item) if isinstance(item, str) else item
        _set(cls, values, k, v, "overrides")
    coerced = {k: _coerce(cls, k, v) for k, v in values.items()}
    cfg = cls(**coerced)
    return cfg.validate() if hasattr(cfg, "validate") else cfg


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the effective configuration (what a run really used) as YAML."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return p


__all__ = [
    "ConfigError",
    "DistillConfig",
    "TrainConfig",
    "check_discriminator",
    "load_config",
    "need",
    "parse_override",
    "read_yaml",
    "save_config",
]
