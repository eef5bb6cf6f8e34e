"""Feature distillation from the frozen teacher to the student (method.md section 5).

Per retained level l: a 1x1 adapter ``A_l`` maps student channels to teacher channels
(identity-initialised when they match, dropped at inference), then

- ``L_mse = (1/N) sum_l mean((A_l(F_s^l) - F_t^l)^2)``, and
- ``L_mmd = (1/N) sum_l mean_b MMD^2(tokens of A_l(F_s^l)[b], tokens of F_t^l[b])`` with a
  multi-bandwidth RBF kernel whose bandwidth is the (detached) median heuristic.

MSE matches features position by position; MMD matches their distribution over positions, which
tolerates small spatial misalignment between a pruned student and its teacher. Everything is
computed in float32 even under autocast: squared distances between 1280-channel features overflow
fp16 and the median bandwidth is sensitive to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_GAMMAS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


class FeatureAdapters(nn.Module):
    """One 1x1 conv per level, ``C_s -> C_t``; identity with zero bias when ``C_s == C_t``."""

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(
                f"student has {len(student_channels)} feature levels, teacher {len(teacher_channels)}"
            )
        self.adapters = nn.ModuleList()
        for cs, ct in zip(student_channels, teacher_channels):
            conv = nn.Conv2d(int(cs), int(ct), kernel_size=1)
            if cs == ct:
                with torch.no_grad():
                    conv.weight.copy_(torch.eye(cs).view(cs, cs, 1, 1))
                    conv.bias.zero_()
            self.adapters.append(conv)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Map a list of (B, C_s^l, h_l, w_l) maps to (B, C_t^l, h_l, w_l)."""
        if len(feats) != len(self.adapters):
            raise ValueError(f"expected {len(self.adapters)} feature maps, got {len(feats)}")
        return [a(f) for a, f in zip(self.adapters, feats)]


def _check_pairs(fs: Sequence[torch.Tensor], ft: Sequence[torch.Tensor]) -> None:
    if len(fs) != len(ft) or not fs:
        raise ValueError(
            f"need the same non-zero number of student/teacher maps, got {len(fs)}/{len(ft)}"
        )
    for i, (a, b) in enumerate(zip(fs, ft)):
        if a.shape != b.shape:
            raise ValueError(
                f"level {i + 1}: adapted student map {tuple(a.shape)} != teacher map {tuple(b.shape)}"
            )


def feature_mse(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], normalize: bool = False
) -> torch.Tensor:
    """Mean over levels of the per-level MSE between adapted student and teacher maps.

    ``normalize`` divides each level by ``mean(F_t^2)`` (the method's fix when feature MSE
    dwarfs the reconstruction loss at step 0). Shapes (B, C, h, w) per level; returns fp32 scalar.
    """
    _check_pairs(student, teacher)
    with torch.autocast(device_type=student[0].device.type, enabled=False):
        terms = []
        for s, t in zip(student, teacher):
            s, t = s.float(), t.detach().float()
            term = (s - t).pow(2).mean()
            if normalize:
                term = term / t.pow(2).mean().clamp_min(1e-12)
            terms.append(term)
        return torch.stack(terms).mean()


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) squared Euclidean distances, clamped at 0."""
    d = a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1).unsqueeze(0) - 2.0 * a @ b.T
    return d.clamp_min(0.0)


def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Median of the off-diagonal squared distances over X u Y (detached; >= 1e-12)."""
    z = torch.cat([x, y]).detach()
    d = pairwise_sq_dists(z, z)
    n = z.shape[0]
    off = d[~torch.eye(n, dtype=torch.bool, device=d.device)]
    return off.median().clamp_min(1e-12) if off.numel() else d.new_tensor(1.0)


def rbf_kernel(
    sq_dists: torch.Tensor,
    bandwidth: torch.Tensor | float,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
) -> torch.Tensor:
    """``k = mean_gamma exp(-d^2 / (gamma h))`` elementwise on squared distances."""
    return torch.stack([torch.exp(-sq_dists / (g * bandwidth)) for g in gammas]).mean(0)


def mmd_rbf(
    x: torch.Tensor,
    y: torch.Tensor,
    unbiased: bool = True,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    bandwidth: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Squared MMD between samples ``x`` (n, d) and ``y`` (m, d) with a multi-bandwidth RBF.

    Unbiased (default): within-sample sums exclude i = j and are divided by n(n-1), m(m-1); the
    estimate can be slightly negative (for x == y it is -O(1/n), because the cross sum over all
    i, j includes k(x_i, x_i) = 1). Biased: all sums include i = j, divided by n^2, m^2; >= 0.
    ``bandwidth`` None uses :func:`median_bandwidth`. Computed in float32.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be (n, d) and (m, d), got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    n, m = x.shape[0], y.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ValueError("the unbiased MMD needs at least 2 samples on each side")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, y = x.float(), y.float()
        h = median_bandwidth(x, y) if bandwidth is None else bandwidth
        kxx = rbf_kernel(pairwise_sq_dists(x, x), h, gammas)
        kyy = rbf_kernel(pairwise_sq_dists(y, y), h, gammas)
        kxy = rbf_kernel(pairwise_sq_dists(x, y), h, gammas)
        if unbiased:
            sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
            syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        else:
            sxx, syy = kxx.sum() / n**2, kyy.sum() / m**2
        return sxx + syy - 2.0 * kxy.sum() / (n * m)


def token_indices(
    num_tokens: int, max_tokens: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor | None:
    """Indices of at most ``max_tokens`` positions: random with a generator, else evenly strided.

    Returns None when all tokens fit (no subsampling).
    """
    if num_tokens <= max_tokens:
        return None
    if generator is not None:
        idx = torch.randperm(num_tokens, generator=generator, device=generator.device)[:max_tokens]
        return idx.to(device)
    return torch.linspace(0, num_tokens - 1, max_tokens, device=device).round().long()


def feature_mmd(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    max_tokens: int = 1024,
    unbiased: bool = True,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean over levels and images of the MMD between the spatial tokens of one image's maps.

    Per image, a (C, h, w) map becomes h*w tokens of dimension C; at most ``max_tokens`` are kept,
    with the same indices for student and teacher. Shapes (B, C, h, w) per level; fp32 scalar.
    """
    _check_pairs(student, teacher)
    with torch.autocast(device_type=student[0].device.type, enabled=False):
        terms = []
        for s, t in zip(student, teacher):
            b, c = s.shape[:2]
            xs = s.float().flatten(2).transpose(1, 2)  # (B, hw, C)
            xt = t.detach().float().flatten(2).transpose(1, 2)
            for i in range(b):
                idx = token_indices(xs.shape[1], max_tokens, generator, s.device)
                a, bb = (xs[i], xt[i]) if idx is None else (xs[i, idx], xt[i, idx])
                terms.append(mmd_rbf(a, bb, unbiased=unbiased, gammas=gammas))
        return torch.stack(terms).mean()


def distillation_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    adapters: FeatureAdapters | None = None,
    lambda_mmd: float = 1.0,
    use_mmd: bool = True,
    normalize_mse: bool = False,
    max_tokens: int = 1024,
    unbiased: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``L_mse + lambda_mmd * L_mmd`` on adapted student maps; returns ``mse``, ``mmd``, ``total``.

    ``use_mmd=False`` is the No-MMD ablation (``mmd`` is reported as 0 and not computed).
    """
    fs = adapters(student) if adapters is not None else list(student)
    mse = feature_mse(fs, teacher, normalize=normalize_mse)
    if use_mmd and lambda_mmd != 0:
        mmd = feature_mmd(fs, teacher, max_tokens, unbiased, generator=generator)
    else:
        mmd = mse.new_zeros(())
    return {"mse": mse, "mmd": mmd, "total": mse + lambda_mmd * mmd}


__all__ = [
    "DEFAULT_GAMMAS",
    "FeatureAdapters",
    "distillation_loss",
    "feature_mmd",
    "feature_mse",
    "median_bandwidth",
    "mmd_rbf",
    "pairwise_sq_dists",
    "rbf_kernel",
    "token_indices",
]
