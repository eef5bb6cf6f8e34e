"""Learned and statistical image-quality metrics, with every weight file read from a local folder.

The paper (method.md section 7) reports LPIPS (AlexNet), DISTS, NIQE, MUSIQ, MANIQA and CLIPIQA
with pyiqa's defaults. Here:

- ``lpips`` / ``lpips-vgg``: the ``lpips`` package (v0.1), weights from ``lpips_alex.safetensors``
  / ``lpips_vgg.safetensors``;
- ``dists``: DISTS (Ding et al. 2020) as in pyiqa / DISTS_pytorch, on torchvision's VGG16 layout,
  weights from ``vgg16_features.safetensors`` + ``dists_alpha_beta.safetensors``;
- ``niqe``: pyiqa's NIQE function (Y of YIQ, pyiqa's default), parameters from
  ``niqe_pris_params.safetensors``;
- ``musiq``, ``maniqa``, ``clipiqa``: pyiqa's networks, only when their pyiqa checkpoint files are
  in ``<weights dir>/pyiqa/``; pyiqa's downloader is replaced by a lookup in that folder, so a
  missing file is an error, never a download.

:func:`build_metric` returns an :class:`IQAMetric`; calling it scores one image (and its reference
for full-reference metrics). Images are (C, H, W) arrays or tensors in [0, 1]; 3 bands are RGB,
more bands use the first three, 1 band is repeated. A metric that cannot be built raises
:class:`MetricUnavailable` (a :class:`~slimdiffsr.weights.WeightsMissingError` for missing files)
whose message is the reason to print when the metric is skipped.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimdiffsr.errors import SlimDiffSRError
from slimdiffsr.weights import PYIQA_FILES, WeightsMissingError, require, weights_dir


class MetricUnavailable(SlimDiffSRError, RuntimeError):
    """A metric cannot run here (weights or library missing); the message says why."""


@dataclass
class IQAMetric:
    """A ready metric: ``metric(img)`` (no-reference) or ``metric(img, ref)`` -> float."""

    name: str
    full_reference: bool
    lower_better: bool
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    device: torch.device

    @torch.no_grad()
    def __call__(self, img: Any, ref: Any = None) -> float:
        x = to_rgb_batch(img, self.device)
        y = None
        if self.full_reference:
            if ref is None:
                raise ValueError(f"{self.name} is a full-reference metric: pass ref")
            y = to_rgb_batch(ref, self.device)
            if x.shape != y.shape:
                raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        return float(self.fn(x, y).reshape(-1)[0])


def to_rgb_batch(img: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """(C, H, W) or (1, C, H, W) array/tensor in [0, 1] -> float32 (1, 3, H, W) on ``device``."""
    t = torch.as_tensor(np.asarray(img) if not isinstance(img, torch.Tensor) else img)
    t = t.detach().float()
    if t.ndim == 2:
        t = t[None]
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[0] != 1:
        raise ValueError(f"expected one (C, H, W) image, got shape {tuple(t.shape)}")
    c = t.shape[1]
    if c == 1:
        t = t.expand(-1, 3, -1, -1)
    elif c >= 3:
        t = t[:, :3]
    else:
        raise ValueError(f"need 1 or >= 3 bands, got {c}")
    return t.to(device).contiguous()


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


# ------------------------------------------------------------------------------------------------
# LPIPS
# ------------------------------------------------------------------------------------------------
def load_lpips(net: str = "alex", directory: str | Path | None = None) -> nn.Module:
    """``lpips.LPIPS(net=net)`` (v0.1) in eval mode, all weights from the local folder."""
    path = require(f"lpips_{net}.safetensors", directory)
    try:
        import lpips
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MetricUnavailable("LPIPS needs the 'lpips' package (pip install lpips)") from e
    # pretrained=False, pnet_rand=True: build the layers without any torchvision/package weights.
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    missing, unexpected = model.load_state_dict(_load_safetensors(path), strict=False)
    if missing or unexpected:
        raise MetricUnavailable(
            f"{path} is not an LPIPS-{net} state dict (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); rebuild it with the provision command"
        )
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------
# DISTS
# ------------------------------------------------------------------------------------------------
class _L2Pool(nn.Module):
    """DISTS' L2 pooling (Hann 5-tap window, stride 2), which replaces VGG's max pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = np.hanning(5)[1:-1]
        g = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
        self.register_buffer("filter", (g / g.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS(nn.Module):
    """DISTS (pyiqa ``DISTS``, the authors' DISTS_pt), built without downloading VGG16.

    ``features`` is torchvision's ``vgg16().features`` state dict; ``alpha``/``beta`` the
    learned (1, 1475, 1, 1) weights. Input (B, 3, H, W) in [0, 1]; returns (B,) distances.
    """

    chns = (3, 64, 128, 256, 512, 512)

    def __init__(self, features: dict[str, torch.Tensor], alpha: torch.Tensor, beta: torch.Tensor):
        super().__init__()
        from torchvision.models import vgg16

        vgg = vgg16(weights=None).features
        vgg.load_state_dict(features)
        pools = {4: 64, 9: 128, 16: 256, 23: 512}
        bounds = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]
        stages = []
        for lo, hi in bounds:
            s = nn.Sequential()
            for i in range(lo, hi):
                s.add_module(str(i), _L2Pool(pools[i]) if i in pools else vgg[i])
            stages.append(s)
        self.stages = nn.ModuleList(stages)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
        self.register_buffer("alpha", alpha.float().reshape(1, -1, 1, 1))
        self.register_buffer("beta", beta.float().reshape(1, -1, 1, 1))
        self.requires_grad_(False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        feats = [x]
        for s in self.stages:
            h = s(h)
            feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f0, f1 = self._features(x), self._features(y)
        w_sum = self.alpha.sum() + self.beta.sum()
        alpha = torch.split(self.alpha / w_sum, list(self.chns), dim=1)
        beta = torch.split(self.beta / w_sum, list(self.chns), dim=1)
        d1 = d2 = 0.0
        c1 = c2 = 1e-6
        for k in range(len(self.chns)):
            xm, ym = f0[k].mean([2, 3], keepdim=True), f1[k].mean([2, 3], keepdim=True)
            s1 = (2 * xm * ym + c1) / (xm**2 + ym**2 + c1)
            d1 = d1 + (alpha[k] * s1).sum(1, keepdim=True)
            xv = ((f0[k] - xm) ** 2).mean([2, 3], keepdim=True)
            yv = ((f1[k] - ym) ** 2).mean([2, 3], keepdim=True)
            cov = (f0[k] * f1[k]).mean([2, 3], keepdim=True) - xm * ym
            s2 = (2 * cov + c2) / (xv + yv + c2)
            d2 = d2 + (beta[k] * s2).sum(1, keepdim=True)
        return (1 - (d1 + d2)).reshape(-1)


def load_dists(directory: str | Path | None = None) -> DISTS:
    feats = _load_safetensors(require("vgg16_features.safetensors", directory))
    ab = _load_safetensors(require("dists_alpha_beta.safetensors", directory))
    return DISTS(feats, ab["alpha"], ab["beta"]).eval()


# ------------------------------------------------------------------------------------------------
# NIQE
# ------------------------------------------------------------------------------------------------
def load_niqe_params(directory: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    p = _load_safetensors(require("niqe_pris_params.safetensors", directory))
    return p["mu_pris_param"].reshape(-1).double(), p["cov_pris_param"].double()


def niqe(
    img: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor, crop: int = 0, color_space: str = "yiq"
) -> torch.Tensor:
    """NIQE of (B, 3, H, W) in [0, 1] (lower is better), via pyiqa's implementation."""
    try:
        from pyiqa.archs.niqe_arch import calculate_niqe
    except ImportError as e:  # pragma: no cover
        raise MetricUnavailable("NIQE needs the 'pyiqa' package") from e
    return calculate_niqe(img, crop, True, color_space, mu, cov)


# ------------------------------------------------------------------------------------------------
# pyiqa networks with local checkpoints only
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def pyiqa_local_files(folder: Path) -> Iterator[None]:
    """Make pyiqa resolve checkpoint URLs to files in ``folder`` (and fail instead of fetching).

    pyiqa has no offline switch; its downloaders are replaced for the duration of the block.
    """
    import pyiqa.archs.arch_util as au
    import pyiqa.utils.download_util as du

    def local(url: str, model_dir: Any = None, progress: bool = True, file_name: Any = None) -> str:
        name = file_name or Path(url.split("?")[0]).name
        p = folder / name
        if not p.is_file():
            raise WeightsMissingError(
                f"pyiqa checkpoint {name!r} not found in {folder}; copy it there from a machine "
                "with internet access (pyiqa's cache, ~/.cache/torch/hub/pyiqa)"
            )
        return str(p)

    mods = [du, au] + [
        m
        for m in list(sys.modules.values())
        if getattr(m, "__name__", "").startswith("pyiqa.") and hasattr(m, "load_file_from_url")
    ]
    # (object, attribute, replacement): pyiqa's downloader everywhere it was imported; CLIP's own
    # downloader (clipiqa); timm's hub weights, which MANIQA's checkpoint overwrites anyway.
    patches: list[tuple[Any, str, Any]] = [(m, "load_file_from_url", local) for m in mods]
    with contextlib.suppress(ImportError):
        import pyiqa.archs.clip_model as cm

        patches.append((cm, "_download", lambda url, root=None, *a, **k: local(url)))
    with contextlib.suppress(ImportError):
        import timm

        create = timm.create_model
        patches.append(
            (timm, "create_model", lambda *a, **k: create(*a, **{**k, "pretrained": False}))
        )
    saved = {(id(o), n): (o, n, getattr(o, n)) for o, n, _ in patches}
    try:
        for o, n, fn in patches:
            setattr(o, n, fn)
        yield
    finally:
        for o, n, fn in saved.values():
            setattr(o, n, fn)


def load_pyiqa(name: str, directory: str | Path | None = None, device: Any = "cpu") -> nn.Module:
    """pyiqa's ``create_metric(name)`` with checkpoints from ``<weights dir>/pyiqa/`` only."""
    folder = weights_dir(directory) / "pyiqa"
    for f in PYIQA_FILES.get(name, ()):
        require(f"pyiqa/{f}", directory)
    try:
        import pyiqa
    except ImportError as e:  # pragma: no cover
        raise MetricUnavailable(f"{name} needs the 'pyiqa' package") from e
    with pyiqa_local_files(folder):
        try:
            return pyiqa.create_metric(name, device=torch.device(device))
        except WeightsMissingError:
            raise
        except Exception as e:  # a dependency tried the network (timm, clip) or failed
            raise MetricUnavailable(
                f"{name}: pyiqa could not build it from local files ({type(e).__name__}: {e})"
            ) from e


# ------------------------------------------------------------------------------------------------
# Factory
# ------------------------------------------------------------------------------------------------
FULL_REFERENCE = ("lpips", "lpips-vgg", "dists")
NO_REFERENCE = ("niqe", "musiq", "maniqa", "clipiqa")
LOWER_BETTER = {"lpips", "lpips-vgg", "dists", "niqe"}


def build_metric(
    name: str, directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> IQAMetric:
    """Build ``name`` (see :data:`FULL_REFERENCE`, :data:`NO_REFERENCE`) from local weights."""
    dev = torch.device(device)
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    if name in ("lpips", "lpips-vgg"):
        m = load_lpips("alex" if name == "lpips" else "vgg", directory).to(dev)

        def fn(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            return m(x, y, normalize=True)

    elif name == "dists":
        d = load_dists(directory).to(dev)

        def fn(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            return d(x, y)

    elif name == "niqe":
        mu, cov = load_niqe_params(directory)

        def fn(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            return niqe(x, mu, cov)

    elif name in ("musiq", "maniqa", "clipiqa"):
        net = load_pyiqa(name, directory, dev)

        def fn(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
            return net(x)

    else:
        raise ValueError(
            f"unknown metric {name!r}; known: {', '.join(FULL_REFERENCE + NO_REFERENCE)}"
        )
    return IQAMetric(name, name in FULL_REFERENCE, name in LOWER_BETTER, fn, dev)


__all__ = [
    "DISTS",
    "FULL_REFERENCE",
    "IQAMetric",
    "MetricUnavailable",
    "NO_REFERENCE",
    "build_metric",
    "load_dists",
    "load_lpips",
    "load_niqe_params",
    "niqe",
    "pyiqa_local_files",
    "to_rgb_batch",
]
