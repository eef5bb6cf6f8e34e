"""Preflight: look at the input against the model card before the first tile, say what is assumed.

``preflight`` plans the run (``engine.plan``) and adds what a user should know first: one plain
sentence saying how the raster's values are read and mapped onto the model's domain and how to
override it, which bands are super-resolved and which interpolated, and warnings (ground sampling
distance far outside the model's training range, a geographic CRS). Where nothing sensible exists
(too few bands for the model, a value range no mapping fits) planning refuses with one clear error.
The CLI prints the sentence, the worker answers ``preflight`` requests with it, and the run keeps it
in the output tags, the QA report and the summary. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimdiffsr.engine.plan import Plan, RunOptions, make_plan
from slimdiffsr.errors import GeographicCRSWarning

GSD_FACTOR = 3.0  # a GSD more than this factor outside the card's range is "far outside"


class GSDWarning(UserWarning):
    """The input's ground sampling distance is far from what the model was trained on."""


@dataclass(frozen=True)
class Preflight:
    """The plan of a run plus what to tell the user about it before it starts."""

    plan: Plan
    sentence: str
    warnings: tuple[tuple[type[Warning], str], ...] = field(default_factory=tuple)
    model: str = ""

    @property
    def messages(self) -> list[str]:
        return [m for _, m in self.warnings]

    def describe(self) -> str:
        """The sentence, then which bands are interpolated (when any)."""
        p = self.plan
        text = self.sentence
        if p.interp_pos:
            text += (
                f"; bands {_list(p.sr_bands)} super-resolved, {_list(p.interp_bands)} "
                "upsampled bicubically"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        """The worker's ``plan`` object (see docs/ARCHITECTURE.md, Worker protocol)."""
        p = self.plan
        return {
            "model": self.model,
            "bands_in": list(p.bands),
            "bands_sr": list(p.sr_bands),
            "bands_interpolated": p.interp_bands,
            "mapping": p.mapping.to_dict(),
            "tiles": p.grid.shape[0] * p.grid.shape[1],
            "warnings": self.messages,
        }


def _list(bands: list[int]) -> str:
    return ",".join(str(b) for b in bands)


def gsd_metres(src: Any) -> float | None:
    """The pixel size on the ground in metres (mean of x and y), when the CRS says so."""
    crs = src.crs
    if crs is None or crs.is_geographic:
        return None
    try:
        _, factor = crs.linear_units_factor
    except Exception:  # noqa: BLE001 - CRSs without linear units
        return None
    rx, ry = abs(src.transform.a), abs(src.transform.e)
    if not (rx > 0 and ry > 0):
        return None
    return math.sqrt(rx * ry) * float(factor)


def check(src: Any, inp: Path, plan: Plan) -> list[tuple[type[Warning], str]]:
    """Warnings about the input against the model card (nothing refused here)."""
    out: list[tuple[type[Warning], str]] = []
    if src.crs is not None and src.crs.is_geographic:
        out.append(
            (
                GeographicCRSWarning,
                f"{inp.name} is in a geographic CRS ({src.crs.to_string()}): its pixels are "
                "not square on the ground; consider reprojecting to a projected CRS first",
            )
        )
    gsd, rng = gsd_metres(src), plan.domain.gsd_m
    if gsd is not None and rng is not None:
        lo, hi = rng
        if gsd > hi * GSD_FACTOR or gsd < lo / GSD_FACTOR:
            out.append(
                (
                    GSDWarning,
                    f"{inp.name} has {gsd:.3g} m pixels, far outside the {lo:g}-{hi:g} m the "
                    "model was trained on: expect less faithful detail",
                )
            )
    return out


def preflight(src: Any, inp: Path, out: Path | None, up: Any, options: RunOptions) -> Preflight:
    """Plan the run of ``up`` on the open ``src`` and say what it assumes (raises on refusal)."""
    plan = make_plan(src, inp, out, up, options)
    return Preflight(plan, plan.mapping.sentence, tuple(check(src, inp, plan)), up.model_name)
