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


# -- the model's domain and how a raster reaches it ---------------------------------------------
DISPLAY8 = "display8"
REFLECTANCE = "reflectance"
ANY = "any"


@dataclass(frozen=True)
class Domain:
    """What a model was trained on, as its card declares it.

    ``kind``: ``display8`` (8-bit display-range imagery; model units [-1, 1] = values 0..255),
    ``reflectance`` (surface reflectance; [-1, 1] = ``range``, by default 0..1) or ``any`` (a
    linear model such as bicubic: every mapping gives the same result). ``gsd_m`` is the ground
    sampling distance range the model saw in training, when known.
    """

    kind: str = DISPLAY8
    bands: tuple[str, ...] = ()
    wavelengths_nm: tuple[float, ...] = ()
    gsd_m: tuple[float, float] | None = None
    range: tuple[float, float] = (0.0, 255.0)

    @classmethod
    def of_card(cls, card: Any) -> Domain:
        """The card's ``domain``, else derived from its ``value_contract`` (older cards)."""
        if card is None:
            return cls(ANY, range=(0.0, 1.0))
        d = dict(getattr(card, "domain", None) or {})
        bands = tuple(d.get("bands") or getattr(card, "bands", None) or ())
        if d:
            kind = str(d.get("kind", DISPLAY8))
            if kind not in (DISPLAY8, REFLECTANCE, ANY):
                raise ContractError(
                    f"model card domain kind {kind!r} is not one of "
                    f"{DISPLAY8}, {REFLECTANCE}, {ANY}"
                )
            rng = d.get("range") or ((0.0, 255.0) if kind == DISPLAY8 else (0.0, 1.0))
            gsd = d.get("gsd_m")
            return cls(
                kind,
                bands,
                tuple(float(w) for w in d.get("wavelengths_nm") or ()),
                (float(gsd[0]), float(gsd[1])) if gsd else None,
                (float(rng[0]), float(rng[1])),
            )
        vc = getattr(card, "value_contract", None) or {}
        if not vc:
            return cls(ANY, bands, range=(0.0, 1.0))
        low, high = vc.get("low", [0.0]), vc.get("high", [255.0])
        low = float(low[0] if isinstance(low, list | tuple) else low)
        high = float(high[0] if isinstance(high, list | tuple) else high)
        if vc.get("kind", "fixed") == "fixed" and (low, high) == (0.0, 255.0):
            return cls(DISPLAY8, bands, range=(0.0, 255.0))
        if vc.get("kind", "fixed") == "fixed" and high <= 2.0:
            return cls(REFLECTANCE, bands, range=(low, high))
        return cls(ANY, bands, range=(0.0, 1.0))

    def describe(self) -> str:
        if self.kind == DISPLAY8:
            return "the model's 8-bit display range"
        if self.kind == REFLECTANCE:
            return f"the model's reflectance range {self.range[0]:g}-{self.range[1]:g}"
        return "the model's working range"


@dataclass(frozen=True)
class ValueMapping:
    """How one raster's values reach the model's domain, and the one sentence that says so.

    ``contract`` is the fitted affine map raster values <-> model units (never clipped by the
    engine); ``kind`` names the rule that chose it (``as-is``, ``reflectance``, ``percentile``,
    ``override``); ``sentence`` is what preflight shows, the output tags and the QA report keep.
    """

    contract: ValueContract
    kind: str
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sentence": self.sentence, "contract": self.contract.to_dict()}


STRETCH_PERCENTILES = (1.0, 99.0)  # raster-wide, all model bands pooled
DISPLAY_TARGET = (16.0, 240.0)  # where those percentiles land on the 8-bit display range
REFLECTANCE_TARGET = (0.02, 0.4)  # ... and on a reflectance domain, for non-reflectance input
OVERRIDE_HINT = "override with --value-contract"


def _num(v: float) -> str:
    """A value as people write it: 6,500 / 0.25 / -1,000."""
    if abs(v) >= 100 or float(v).is_integer():
        return f"{round(v):,}"
    return f"{v:.3g}"


def _pooled(sample: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """The finite valid values of all bands of a (bands, h, w) sample, as one float64 vector."""
    data = np.asarray(sample, dtype=np.float64)
    if valid is not None:
        data = data[:, valid.astype(bool)] if valid.ndim == 2 else data[valid.astype(bool)]
    data = data.ravel()
    return data[np.isfinite(data)]


def looks_like_reflectance(values: np.ndarray, scale: float, offset: float) -> bool:
    """Physical values ``DN * scale + offset`` in the plausible range of surface reflectance:
    none far below 0 or above ~1.5, and some dark pixels (1st percentile at most 0.35; Level-1
    digital numbers such as Landsat's 6,000-9,000 would read as implausibly bright)."""
    if values.size == 0:
        return False
    lo, p1, hi = np.percentile(values * scale + offset, [0.1, 1.0, 99.9])
    return bool(lo >= -0.25 and p1 <= 0.35 and 0.005 < hi <= 1.6)


def choose_mapping(
    dtype: str,
    sample: np.ndarray,
    valid: np.ndarray | None,
    domain: Domain,
    scale: float | None = None,
    offset: float | None = None,
) -> ValueMapping:
    """Pick the map from ``dtype`` raster values onto ``domain``, from a raster-wide ``sample``.

    ``scale``/``offset`` are the raster's own ``physical = DN * scale + offset`` (band metadata or
    product metadata); without them, integers that fit are read as reflectance x 10,000 and floats
    as reflectance. Refuses (ContractError) when no valid value exists or all are equal.
    """
    dtype = np.dtype(dtype).name
    values = _pooled(sample, valid)
    if values.size == 0:
        raise ContractError("no valid pixel to choose a value mapping from (all nodata?)")
    vmin, vmax = float(values.min()), float(values.max())
    p_lo, p_hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    seen = f"{dtype} values {_num(p_lo)}-{_num(p_hi)}"
    if vmax <= vmin:
        raise ContractError(
            f"every valid pixel is {_num(vmin)}: there is no contrast to map onto the model's "
            f"range; pass --value-contract fixed:LOW:HIGH if that is intended"
        )
    if domain.kind == ANY:
        from dataclasses import replace

        c = replace(ValueContract.for_dtype(dtype), clip=False)
        return ValueMapping(c, "as-is", f"{seen} passed through unchanged (a linear model)")
    known = scale is not None and (scale != 1.0 or (offset or 0.0) != 0.0)
    if known:
        sc, off = float(scale), float(offset or 0.0)
        sign = "-" if off < 0 else "+"
        how = f"read as reflectance = DN x {sc:g} {sign} {abs(off):g} (the raster's scale/offset)"
    elif dtype.startswith("float"):
        sc, off = 1.0, 0.0
        how = "read as reflectance"
    else:
        sc, off = 1e-4, 0.0
        how = "read as reflectance x 10,000"
    reflectance = dtype != "uint8" and looks_like_reflectance(values, sc, off)
    if domain.kind == DISPLAY8:
        d0, d1 = domain.range
        if dtype == "uint8" and vmin >= d0 and vmax <= d1:
            c = ValueContract("fixed", (d0,), (d1,), clip=False)
            return ValueMapping(
                c, "as-is", f"{seen} used as they are ({domain.describe()}); {OVERRIDE_HINT}"
            )
        t0, t1 = DISPLAY_TARGET
        # DN p_lo -> t0 and p_hi -> t1, one gain for all bands; then [d0, d1] -> [-1, 1]
        gain = (t1 - t0) / (p_hi - p_lo)
        low, high = p_lo + (d0 - t0) / gain, p_lo + (d1 - t0) / gain
        c = ValueContract("fixed", (low,), (high,), clip=False)
        target = f"{_num(t0)}-{_num(t1)}"
        if reflectance:
            r0, r1 = p_lo * sc + off, p_hi * sc + off
            text = (
                f"{seen} {how} and mapped onto {domain.describe()} (reflectance "
                f"{r0:.3g}-{r1:.3g} -> {target}, one gain for all bands); "
                f"{OVERRIDE_HINT}"
            )
            return ValueMapping(c, "reflectance", text)
        text = (
            f"{seen} stretched raster-wide onto {domain.describe()} (p{STRETCH_PERCENTILES[0]:g}-"
            f"p{STRETCH_PERCENTILES[1]:g} of all bands -> {target}, one gain for all bands); "
            f"{OVERRIDE_HINT}"
        )
        return ValueMapping(c, "percentile", text)
    # reflectance domain: [range] -> [-1, 1]
    r0, r1 = domain.range
    if reflectance:
        c = ValueContract("fixed", ((r0 - off) / sc,), ((r1 - off) / sc,), clip=False)
        return ValueMapping(
            c, "reflectance", f"{seen} {how} ({domain.describe()}); {OVERRIDE_HINT}"
        )
    t0, t1 = REFLECTANCE_TARGET
    gain = (t1 - t0) / (p_hi - p_lo)
    c = ValueContract("fixed", (p_lo + (r0 - t0) / gain,), (p_lo + (r1 - t0) / gain,), clip=False)
    text = (
        f"{seen} do not look like reflectance; stretched raster-wide onto {domain.describe()} "
        f"(p{STRETCH_PERCENTILES[0]:g}-p{STRETCH_PERCENTILES[1]:g} -> reflectance {t0:g}-{t1:g}); {OVERRIDE_HINT}"
    )
    return ValueMapping(c, "percentile", text)


def override_mapping(contract: ValueContract, dtype: str) -> ValueMapping:
    """A mapping the user gave (``--value-contract``), fitted already; never clipped."""
    from dataclasses import replace

    c = replace(contract, clip=False)
    return ValueMapping(c, "override", f"{dtype} values mapped as requested: {c.describe()}")
