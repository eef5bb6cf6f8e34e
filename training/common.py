"""Shared plumbing of the teacher-side training scripts (stage 0 and stage 1).

- Config: nested defaults in the script, a YAML file and ``--set key.sub=value`` overrides; any key
  the defaults do not know is an error that names it (a typo never silently trains the default).
- Data: every batch is a pure function of ``(seed, step)`` (which crops, which degradation draw),
  so a resumed run sees exactly what an uninterrupted one would, whatever the worker count.
- Checkpoints: safetensors only: optimizer state is flattened to tensors plus JSON metadata; the
  RNG states are stored as tensors. ``checkpoint-{step}`` folders, rotated, ``latest`` resumes.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """A config file or override names an unknown key or has the wrong shape."""


def _merge(base: dict[str, Any], new: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in new.items():
        path = f"{where}{key}"
        if key not in out:
            raise ConfigError(f"unknown config key {path!r}; known here: {sorted(out)}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} is a section; got {value!r}")
            out[key] = _merge(out[key], value, path + ".")
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``a.b=1e-4`` -> ``{"a": {"b": 0.0001}}``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE")
    key, raw = text.split("=", 1)
    # YAML 1.1 reads yes/no/on/off as booleans: keep them strings (mixed_precision=no)
    keep = raw.strip().lower() in ("yes", "no", "on", "off", "y", "n")
    value: Any = raw.strip() if keep else (yaml.safe_load(raw) if raw != "" else None)
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_config(
    defaults: dict[str, Any], path: str | Path | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides, each level checked against the defaults' keys."""
    cfg = copy.deepcopy(defaults)
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        cfg = _merge(cfg, data)
    for text in overrides:
        cfg = _merge(cfg, parse_override(text))
    return cfg


def save_config(cfg: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

DATA_DEFAULTS: dict[str, Any] = {  # the ``data`` section of both scripts
    "train": "training/splits/shared_data.json",
    "val": None,
    "synthetic": False,
    "channels": 3,
    "crop_size": 256,
    "val_crop_size": 256,
    "val_max_images": 8,
    "bands": [1, 2, 3],
    "repeats": 1,
    "degradation": "realesrgan",
    "num_workers": 2,
}


class SyntheticPatches(Dataset):
    """Smooth random images in [0, 1] (tests, benchmarks); ``sample(index, epoch)`` is pure."""

    def __init__(self, crop_size: int, channels: int = 3, length: int = 64, seed: int = 0) -> None:
        self.crop_size, self.channels, self.length, self.seed = crop_size, channels, length, seed

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(
            ((self.seed * 1_000_003 + epoch) * 1_000_003 + index) % 2**63
        )
        c, s = self.channels, self.crop_size
        low = torch.rand(1, c, max(2, s // 8), max(2, s // 8), generator=g)
        x = torch.nn.functional.interpolate(low, size=(s, s), mode="bicubic", align_corners=False)
        return (x[0] + 0.05 * torch.randn(c, s, s, generator=g)).clamp(0, 1)


class StepOrderedPatches(Dataset):
    """Item ``p`` is sample ``p`` of an endless stream: epoch ``p // N`` in a seeded permutation.

    Index the stream from ``start_step * batch_size`` to resume exactly.
    """

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base, self.seed, self.n = base, seed, len(base)
        self._perm: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return 2**62  # endless; the sampler bounds it

    def __getitem__(self, p: int) -> torch.Tensor:
        epoch, pos = divmod(int(p), self.n)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self.base.sample(int(self._perm[1][pos]), epoch)


def build_train_dataset(data: dict[str, Any], seed: int) -> Dataset:
    """``data.synthetic`` or a :class:`RasterPatchDataset` over ``data.train``."""
    if data["synthetic"]:
        return SyntheticPatches(data["crop_size"], data["channels"], seed=seed)
    from slimdiffsr.data.datasets import RasterPatchDataset

    if not data["train"]:
        raise ConfigError("data.train is empty: give folders, globs or a split .json")
    return RasterPatchDataset(
        data["train"],
        crop_size=data["crop_size"],
        bands=data["bands"],
        repeats=data["repeats"],
        seed=seed,
    )


def build_train_loader(
    data: dict[str, Any], seed: int, batch_size: int, start_step: int, max_steps: int
) -> DataLoader:
    """Batches of HR crops (B, C, crop, crop) in [0, 1] for steps ``start_step`` .. ``max_steps - 1``."""
    stream = StepOrderedPatches(build_train_dataset(data, seed), seed)
    indices = range(start_step * batch_size, max_steps * batch_size)
    return DataLoader(
        stream,
        batch_size=batch_size,
        sampler=indices,
        num_workers=data["num_workers"],
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),  # never draw from the global RNG
    )


def build_val_pairs(data: dict[str, Any], scale: int, seed: int) -> list[dict[str, Any]]:
    """Fixed (LR, HR) validation pairs in [0, 1]; empty when ``data.val_max_images`` is 0."""
    if data["val_max_images"] == 0:
        return []
    from slimdiffsr.data.degradation import DegradationConfig, degrade

    deg = DegradationConfig.preset(data["degradation"])
    if data["synthetic"]:
        base = SyntheticPatches(data["crop_size"], data["channels"], seed=seed + 1)
        pairs = []
        for k in range(data["val_max_images"]):
            hr = base.sample(k, 0)
            lr = degrade(hr[None], scale, deg, torch.Generator().manual_seed(seed + k))[0]
            pairs.append({"lr": lr, "hr": hr, "name": f"synthetic_{k:03d}"})
        return pairs
    from slimdiffsr.data.datasets import build_paired_val, load_split

    sources = data["val"]
    if not sources:
        train = data["train"]
        split = train if isinstance(train, str) else (train[0] if len(train) == 1 else "")
        if not str(split).endswith(".json"):
            log.warning("no data.val and no split file: validation is off")
            return []
        sources = [str(p) for p in load_split(split).val]
    val = build_paired_val(
        sources,
        scale,
        deg,
        seed=seed,
        crop_size=data["val_crop_size"],
        bands=data["bands"],
        max_images=data["val_max_images"],
    )
    return [val[i] for i in range(len(val))]


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The degradation RNG of one step: a pure function of ``(seed, step)``."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


def degrade_batch(
    hr: torch.Tensor, scale: int, preset: str, seed: int, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """HR [0, 1] -> (LR, HR) in the model's [-1, 1]."""
    from slimdiffsr.data.degradation import DegradationConfig, degrade

    lr = degrade(hr, scale, DegradationConfig.preset(preset), step_generator(seed, step, hr.device))
    return lr * 2 - 1, hr * 2 - 1


def psnr(sr: torch.Tensor, hr: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (computed on [0, 1], after clamping the SR)."""
    mse = ((sr.float().clamp(-1, 1) - hr.float()) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flatten an optimizer state dict into safetensors-compatible tensors and string metadata."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    meta = {"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)}
    return tensors, meta


def load_optimizer_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, str]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for name, value in json.loads(meta["scalars"]).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def save_optimizer(opt: torch.optim.Optimizer, path: str | Path) -> None:
    tensors, meta = optimizer_tensors(opt)
    save_file(tensors, str(path), metadata=meta)


def load_optimizer(opt: torch.optim.Optimizer, path: str | Path) -> None:
    load_optimizer_tensors(opt, load_file(str(path)), _metadata(Path(path)))


def save_training_state(path: str | Path, step: int) -> None:
    """Step and every torch RNG state (CPU, each CUDA device) in one safetensors file."""
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_file(tensors, str(path), metadata={"step": str(step)})


def load_training_state(path: str | Path) -> int:
    """Restore the RNG states saved by :func:`save_training_state`; returns the step."""
    tensors = load_file(str(path))
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return int(_metadata(Path(path))["step"])


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """``checkpoint-{step}`` folders, oldest first."""
    found = [
        p for p in Path(output_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def resolve_checkpoint(output_dir: str | Path, spec: str | None) -> Path | None:
    """``None`` -> no resume; ``latest`` -> newest in ``output_dir`` (or None); else a path."""
    if not spec:
        return None
    if spec == "latest":
        dirs = checkpoint_dirs(output_dir)
        return dirs[-1] if dirs else None
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {path}")
    return path


def rotate_checkpoints(output_dir: str | Path, limit: int | None) -> None:
    """Keep the newest ``limit`` checkpoints (all when ``limit`` is None or < 1)."""
    if not limit or limit < 1:
        return
    for old in checkpoint_dirs(output_dir)[:-limit]:
        shutil.rmtree(old)


def add_common_args(parser) -> None:
    """Flags shared by the scripts; names follow diffusers' training examples."""
    parser.add_argument("--config", type=str, default=None, help="YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted path, YAML value); repeatable",
    )
    for flag, kind in (
        ("pretrained_model_name_or_path", str),
        ("output_dir", str),
        ("resume_from_checkpoint", str),
        ("max_train_steps", int),
        ("train_batch_size", int),
        ("learning_rate", float),
        ("mixed_precision", str),
        ("seed", int),
    ):
        parser.add_argument(f"--{flag}", type=kind, default=None, help=f"same as --set {flag}=...")


def config_from_args(defaults: dict[str, Any], args, parser=None) -> dict[str, Any]:
    """Defaults <- ``--config`` <- ``--set`` <- the direct flags that were given.

    With ``parser``, config errors exit through ``parser.error`` (a message, not a traceback)."""
    overrides = list(args.overrides)
    for key in (
        "pretrained_model_name_or_path",
        "output_dir",
        "resume_from_checkpoint",
        "max_train_steps",
        "train_batch_size",
        "learning_rate",
        "mixed_precision",
        "seed",
    ):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    try:
        cfg = load_config(defaults, args.config, overrides)
        if cfg.get("mixed_precision") is False:  # ``mixed_precision: no`` in a YAML file
            cfg["mixed_precision"] = "no"
        if cfg.get("mixed_precision") not in ("no", "fp16", "bf16"):
            raise ConfigError(
                f"mixed_precision must be no, fp16 or bf16, got {cfg['mixed_precision']!r}"
            )
        return cfg
    except (ConfigError, OSError, yaml.YAMLError) as e:
        if parser is None:
            raise
        parser.error(str(e))
