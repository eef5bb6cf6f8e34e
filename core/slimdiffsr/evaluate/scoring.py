"""Metric names, the per-image ``Scorer`` and the ``Results`` of an evaluation run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slimdiffsr.errors import InputError

PIXEL_METRICS = ("psnr", "ssim")
LR_METRICS = ("consistency", "sam")  # need the LR input
DETAIL_METRIC = "detail"  # improvement / omission / hallucination; needs HR and LR
LEARNED_FR = ("lpips", "lpips-vgg", "dists")
LEARNED_NR = ("niqe", "musiq", "maniqa", "clipiqa")
ALL_METRICS = PIXEL_METRICS + LEARNED_FR + LEARNED_NR + LR_METRICS + (DETAIL_METRIC, "seam")
LOWER_BETTER = {"lpips", "lpips-vgg", "dists", "niqe", "consistency", "sam", "seam"}
LOWER_BETTER |= {"hallucination", "omission"}
DEFAULT_REF_METRICS = "psnr,ssim,lpips,consistency"
DEFAULT_NR_METRICS = "niqe"


class EvaluateError(InputError):
    """Bad evaluation arguments or inputs (printed as one line, exit status 2)."""


@dataclass
class Scorer:
    """Builds the requested metrics once; ``score`` returns ``{metric: value}`` for one image."""

    metrics: list[str]
    scale: int
    crop_border: int
    weights: str | None = None
    device: str = "cpu"
    seam_tile: int | None = None
    has_hr: bool = True
    has_lr: bool = True
    skipped: dict[str, str] = field(default_factory=dict)
    learned: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from slimdiffsr.metrics.iqa import MetricUnavailable, build_metric
        from slimdiffsr.weights import WeightsMissingError

        for m in self.metrics:
            if m in LEARNED_FR + LEARNED_NR:
                try:
                    self.learned[m] = build_metric(m, self.weights, self.device)
                except (WeightsMissingError, MetricUnavailable) as e:
                    self.skipped[m] = str(e)
            elif m in LR_METRICS + (DETAIL_METRIC,) and not self.has_lr:
                self.skipped[m] = "needs the LR input (--lr DIR, or model-driven mode)"

    @property
    def active(self) -> list[str]:
        return [m for m in self.metrics if m not in self.skipped]

    def score(
        self,
        sr: np.ndarray,
        hr: np.ndarray | None,
        lr: np.ndarray | None,
        lr_up: np.ndarray | None,
        value_range: float,
    ) -> dict[str, float]:
        """Metrics of one SR (C, H, W) in [0, 1] against HR / LR (same unit).

        A metric that cannot score this image (e.g. NIQE on a tiny image) gives nan and its first
        error is kept in ``errors``; the others still run.
        """
        out: dict[str, float] = {}
        for m in self.active:
            try:
                out.update(self._one(m, sr, hr, lr, lr_up, value_range))
            except (ValueError, RuntimeError) as e:
                out[m] = float("nan")
                self.errors.setdefault(m, f"{type(e).__name__}: {e}")
        return out

    def _one(
        self,
        m: str,
        sr: np.ndarray,
        hr: np.ndarray | None,
        lr: np.ndarray | None,
        lr_up: np.ndarray | None,
        value_range: float,
    ) -> dict[str, float]:
        from slimdiffsr.metrics import psnr_ssim, rs

        y = sr.shape[0] >= 3 or sr.shape[0] == 1
        if m == "psnr" and hr is not None:
            return {m: psnr_ssim.psnr(sr, hr, self.crop_border, test_y_channel=y)}
        if m == "ssim" and hr is not None:
            return {m: psnr_ssim.ssim(sr, hr, self.crop_border, test_y_channel=y)}
        if m in self.learned:
            metric = self.learned[m]
            if not metric.full_reference:
                return {m: metric(sr)}
            return {m: metric(sr, hr)} if hr is not None else {}
        if m == "consistency" and lr is not None:
            return {m: rs.consistency_l1(sr, lr, self.scale, value_range)}
        if m == "sam" and lr is not None and sr.shape[0] >= 2:
            return {m: rs.consistency_sam(sr, lr, self.scale)}
        if m == DETAIL_METRIC and hr is not None and lr_up is not None:
            d = rs.detail_scores(sr, hr, lr_up)
            return {k: d[k] for k in ("improvement", "omission", "hallucination")}
        if m == "seam" and self.seam_tile:
            return {m: rs.seam_score(sr, self.seam_tile)}
        return {}


@dataclass
class Results:
    """Per-method, per-image metric values, plus what was skipped and noted."""

    metrics: list[str]
    per_image: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, method: str, image: str, values: dict[str, float]) -> None:
        self.per_image.setdefault(method, {})[image] = values

    def columns(self) -> list[str]:
        cols: list[str] = []
        for rows in self.per_image.values():
            for v in rows.values():
                cols.extend(k for k in v if k not in cols)
        order = {m: i for i, m in enumerate(list(ALL_METRICS) + ["improvement", "omission"])}
        order["hallucination"] = len(order)
        order["seconds"] = len(order) + 1
        return sorted(cols, key=lambda c: order.get(c, len(order) + 2))

    def means(self) -> dict[str, dict[str, float]]:
        """Mean over images per method; inf values (identical images) are excluded from PSNR."""
        out: dict[str, dict[str, float]] = {}
        for method, rows in self.per_image.items():
            out[method] = {}
            for c in self.columns():
                vals = [r[c] for r in rows.values() if c in r and math.isfinite(r[c])]
                if vals:
                    out[method][c] = float(np.mean(vals))
        return out

    def to_json(self) -> dict[str, Any]:
        means = self.means()

        def clean(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)

        by_sensor_means = {}
        groups = self.info.get("sensors") or {}
        for g in dict.fromkeys(groups.values()):
            by_sensor_means[g] = {}
            for m, rows in self.per_image.items():
                sel = [v for i, v in rows.items() if groups.get(i) == g]
                cols = {c for v in sel for c in v}
                by_sensor_means[g][m] = {
                    c: float(np.mean([v[c] for v in sel if c in v and math.isfinite(v[c])]))
                    for c in sorted(cols)
                    if any(c in v and math.isfinite(v[c]) for v in sel)
                }
        return {
            **self.info,
            "by_sensor": by_sensor_means,
            "metrics": self.metrics,
            "lower_is_better": sorted(c for c in self.columns() if c in LOWER_BETTER),
            "skipped": self.skipped,
            "notes": self.notes,
            "methods": {
                m: {
                    "mean": means[m],
                    "images": {
                        i: {k: clean(v) for k, v in vals.items()} for i, vals in rows.items()
                    },
                }
                for m, rows in self.per_image.items()
            },
        }


def by_sensor(res: Results) -> dict[str, Results]:
    """Split the results by sensor group (``res.info['sensors']``), keeping method order."""
    groups = res.info.get("sensors") or {}
    out: dict[str, Results] = {}
    for g in dict.fromkeys(groups.values()):
        sub = Results(res.metrics)
        for method, rows in res.per_image.items():
            for img, vals in rows.items():
                if groups.get(img) == g:
                    sub.add(method, img, vals)
        out[g] = sub
    return out
