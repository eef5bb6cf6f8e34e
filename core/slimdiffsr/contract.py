"""Value contracts: how raster digital numbers map to the model's [-1, 1] range and back.

One contract serves the engine (inference) and the datasets (training), so a model sees the same
numbers in both. A contract is either a fixed affine map (``reflectance = DN * scale + offset``,
then [0, 1] -> [-1, 1]) or a percentile stretch whose limits are computed once per raster (from an
overview), never per tile: per-tile stretches are the classic cause of tile seams.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from slimdiffsr.errors import InputError

Kind = Literal["fixed", "percentile"]

DTYPE_RANGES: dict[str, tuple[float, float]] = {
    "uint8": (0.0, 255.0),
    "uint16": (0.0, 65535.0),
    "int16": (-32768.0, 32767.0),
    "uint32": (0.0, 4294967295.0),
    "int32": (-2147483648.0, 2147483647.0),
    "float32": (-np.inf, np.inf),
    "float64": (-np.inf, np.inf),
}


class ContractError(InputError):
    """A value contract cannot be applied to the given data."""


@dataclass(frozen=True)
class ValueContract:
    """Map raster values to [-1, 1] per band and back.

    ``fixed``: unit = (DN - low) / (high - low) with ``low``/``high`` per band (or one value for all
    bands); e.g. uint8 imagery uses low=0, high=255, Sentinel-2 L2A reflectance low=0, high=10000.
    ``percentile``: ``low``/``high`` are filled by :meth:`fit` from percentiles ``p_low``/``p_high``
    of a raster-wide sample (an overview), then behave like ``fixed``.
    """

    kind: Kind = "fixed"
    low: tuple[float, ...] = (0.0,)
    high: tuple[float, ...] = (255.0,)
    p_low: float = 0.5
    p_high: float = 99.5
    clip: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def for_dtype(cls, dtype: str) -> ValueContract:
        """The natural fixed contract of an integer dtype (full range), or [0, 1] for floats."""
        dtype = np.dtype(dtype).name
        if dtype == "uint8":
            return cls("fixed", (0.0,), (255.0,))
        if dtype == "uint16":
            # 16-bit optical products are almost always scaled reflectance (DN / 10000).
            return cls("fixed", (0.0,), (10000.0,))
        if dtype == "int16":
            return cls("fixed", (0.0,), (10000.0,))
        if dtype.startswith("float"):
            return cls("fixed", (0.0,), (1.0,))
        raise ContractError(
            f"unsupported dtype {dtype!r}: use uint8, uint16, int16 or float32 rasters"
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValueContract:
        d = dict(d)
        unknown = set(d) - {"kind", "low", "high", "p_low", "p_high", "clip", "extra"}
        if unknown:
            raise ContractError(f"unknown value-contract keys: {sorted(unknown)}")
        for k in ("low", "high"):
            if k in d:
                v = d[k]
                d[k] = tuple(float(x) for x in (v if isinstance(v, list | tuple) else [v]))
        if d.get("kind", "fixed") not in ("fixed", "percentile"):
            raise ContractError(
                f"value-contract kind must be 'fixed' or 'percentile', got {d['kind']!r}"
            )
        return cls(**d)

    @classmethod
    def parse(cls, text: str) -> ValueContract:
        """Parse a CLI string: ``fixed:0:10000``, ``percentile:2:98`` or ``dtype``/JSON."""
        text = text.strip()
        if text.startswith("{"):
            return cls.from_dict(json.loads(text))
        parts = text.split(":")
        try:
            if parts[0] == "fixed" and len(parts) == 3:
                return cls("fixed", (float(parts[1]),), (float(parts[2]),))
            if parts[0] == "percentile" and len(parts) in (1, 3):
                if len(parts) == 3:
                    return cls("percentile", p_low=float(parts[1]), p_high=float(parts[2]))
                return cls("percentile")
        except ValueError:
            pass
        raise ContractError(
            f"cannot parse value contract {text!r}; use fixed:LOW:HIGH (e.g. fixed:0:10000) "
            "or percentile:PLOW:PHIGH (e.g. percentile:2:98)"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["low"], d["high"] = list(self.low), list(self.high)
        if not d["extra"]:
            d.pop("extra")
        return d

    # -- fitting ------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return self.kind == "fixed" or bool(self.extra.get("fitted"))

    def fit(self, sample: np.ndarray, valid: np.ndarray | None = None) -> ValueContract:
        """Return a fixed-limit copy, limits from percentiles of ``sample`` (bands, h, w).

        ``valid`` (h, w) or (bands, h, w) excludes nodata from the statistics. Fixed contracts
        are returned unchanged.
        """
        if self.kind == "fixed":
            return self
        sample = np.asarray(sample, dtype=np.float64)
        if sample.ndim != 3:
            raise ContractError("fit() needs a (bands, h, w) sample")
        lows, highs = [], []
        for b in range(sample.shape[0]):
            band = sample[b]
            if valid is not None:
                m = valid if valid.ndim == 2 else valid[b]
                band = band[m.astype(bool)]
            band = band[np.isfinite(band)]
            if band.size == 0:
                raise ContractError(f"band {b + 1} has no valid pixels to compute a stretch from")
            lo, hi = np.percentile(band, [self.p_low, self.p_high])
            if hi <= lo:
                hi = lo + 1.0
            lows.append(float(lo))
            highs.append(float(hi))
        return ValueContract(
            "percentile",
            tuple(lows),
            tuple(highs),
            self.p_low,
            self.p_high,
            self.clip,
            {"fitted": True},
        )

    # -- application --------------------------------------------------------------------------
    def _limits(self, bands: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.fitted:
            raise ContractError("a percentile contract must be fit() to the raster before use")
        low = np.asarray(self.low, dtype=np.float32)
        high = np.asarray(self.high, dtype=np.float32)
        if low.size == 1:
            low = np.repeat(low, bands)
        if high.size == 1:
            high = np.repeat(high, bands)
        if low.size != bands or high.size != bands:
            raise ContractError(
                f"value contract has {low.size} band limits but the data has {bands} bands"
            )
        return low.reshape(-1, 1, 1), high.reshape(-1, 1, 1)

    def to_model(self, dn: np.ndarray) -> np.ndarray:
        """(bands, h, w) raster values -> float32 in [-1, 1] (clipped when ``clip``)."""
        low, high = self._limits(dn.shape[-3])
        unit = (dn.astype(np.float32) - low) / (high - low)
        if self.clip:
            unit = np.clip(unit, 0.0, 1.0)
        return unit * 2.0 - 1.0

    def from_model(self, x: np.ndarray, dtype: str | np.dtype = "float32") -> np.ndarray:
        """[-1, 1] model output -> raster values of ``dtype`` (rounded and clipped for integers)."""
        low, high = self._limits(x.shape[-3])
        unit = (np.asarray(x, dtype=np.float32) + 1.0) * 0.5
        if self.clip:
            unit = np.clip(unit, 0.0, 1.0)
        dn = unit * (high - low) + low
        dt = np.dtype(dtype)
        if dt.kind in "ui":
            info = np.iinfo(dt)
            dn = np.clip(np.rint(dn), info.min, info.max)
        return dn.astype(dt)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"fixed [{_fmt(self.low)}, {_fmt(self.high)}] -> [-1, 1]"
        if self.fitted:
            return f"percentile {self.p_low}-{self.p_high} (raster-wide: [{_fmt(self.low)}, {_fmt(self.high)}])"
        return f"percentile {self.p_low}-{self.p_high} (computed once per raster)"


def _fmt(v: tuple[float, ...]) -> str:
    return ",".join(f"{x:g}" for x in v)
