"""Raster I/O for the engine: profiles in, profiles out, windowed reads, atomic files.

Profiles mirror ``rasterio.open`` keywords (rasterio's ``profiles.rst``): the output profile is
the input's georeferencing with the transform scaled by 1/scale, the same dtype and nodata unless
asked otherwise, tiled and compressed with BigTIFF when needed. Nothing is written in place: the
engine writes ``.<name>.partial.tif`` beside the target and renames it at the end
(:func:`replace_atomic`), so a reader never sees half a file at the output path.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioIOError
from rasterio.transform import rowcol
from rasterio.windows import Window as RioWindow

from slimdiffsr import protocol
from slimdiffsr.engine.manifest import fsync_path
from slimdiffsr.engine.tiling import Window, clip_with_padding, intersection
from slimdiffsr.errors import DiskSpaceError, InputError

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32", "float64")
OUTPUT_DTYPES = ("uint8", "uint16", "int16", "float32")
COMPRESSIONS = ("deflate", "zstd", "lzw", "none")


def to_rio(w: Window) -> RioWindow:
    return RioWindow(w.col_off, w.row_off, w.width, w.height)


def window_transform(src: Any, w: Window) -> Affine:
    """The affine of a window's top-left pixel. Not ``rasterio.windows.transform``: that one
    multiplies with ``*``, which affine >= 2.4 reports as deprecated on every call."""
    return src.transform @ Affine.translation(w.col_off, w.row_off)


def raster_window(src: Any) -> Window:
    """The whole raster as a window."""
    return Window(row_off=0, col_off=0, height=src.height, width=src.width)


# -- opening and describing the input ----------------------------------------------------------
def open_input(path: str | Path) -> Any:
    """Open a raster for reading; unreadable or non-raster files raise :class:`InputError`.

    A satellite product (Sentinel-2 ``.SAFE`` folder or zip, Landsat C2 L2 folder or MTL file)
    opens as a virtual raster over its band files (see ``engine.products``).
    """
    from slimdiffsr.engine.products import detect

    p = Path(path)
    if not str(path).startswith("/vsi") and not p.exists():
        raise InputError(f"input not found: {p}")
    try:
        product = detect(p)
        if product is not None:
            vrt = rasterio.MemoryFile(product.vrt().encode(), filename=f"{product.name}.vrt")
            return vrt.open()
        return rasterio.open(str(path))
    except RasterioIOError as e:
        raise InputError(f"cannot read {path} as a raster ({e})") from e


def check_dtype(src: Any) -> str:
    dtype = src.dtypes[0]
    if len(set(src.dtypes)) != 1:
        raise InputError(f"{src.name}: bands have different data types {set(src.dtypes)}")
    if dtype not in SUPPORTED_DTYPES:
        raise InputError(
            f"{src.name}: unsupported data type {dtype}; use {', '.join(SUPPORTED_DTYPES)}"
        )
    return dtype


def alpha_band(src: Any) -> int | None:
    """1-based index of the alpha band, if any."""
    for i, ci in enumerate(src.colorinterp, start=1):
        if ci == ColorInterp.alpha:
            return i
    return None


def mask_kind(src: Any, bands: list[int]) -> str:
    """How the input marks invalid pixels: ``nodata``, ``alpha``, ``mask`` or ``none``."""
    flags = [src.mask_flag_enums[b - 1] for b in bands]
    if any(MaskFlags.nodata in f for f in flags) and src.nodata is not None:
        return "nodata"
    if any(MaskFlags.alpha in f for f in flags) and alpha_band(src) is not None:
        return "alpha"
    if any(MaskFlags.per_dataset in f for f in flags):
        return "mask"
    return "none"


@dataclass(frozen=True)
class BandMeta:
    """What is kept per selected band: description, colour interpretation, scale/offset, unit."""

    descriptions: tuple[str | None, ...]
    colorinterp: tuple[ColorInterp, ...]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    units: tuple[str | None, ...]

    @classmethod
    def of(cls, src: Any, bands: list[int]) -> BandMeta:
        pick = lambda seq: tuple(seq[b - 1] for b in bands)  # noqa: E731
        return cls(
            pick(src.descriptions),
            pick(src.colorinterp),
            pick(src.scales),
            pick(src.offsets),
            pick(src.units),
        )


# -- reading -----------------------------------------------------------------------------------
def _valid(src: Any, bands: list[int], window: Window, data: np.ndarray) -> np.ndarray:
    """Valid pixels: any selected band valid by GDAL's mask (nodata, alpha, mask), all finite."""
    masks = src.read_masks(bands, window=to_rio(window))
    valid = masks.any(axis=0)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(axis=0)
    return valid


def read_region(src: Any, bands: list[int], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` (inside the raster): data (bands, h, w) and valid mask (h, w)."""
    data = src.read(bands, window=to_rio(window))
    return data, _valid(src, bands, window, data)


def _pad(a: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Reflect-pad the last two axes (edge-pad an axis of length 1, which cannot reflect)."""
    top, bottom, left, right = pads
    lead = [(0, 0)] * (a.ndim - 2)
    if top or bottom:
        mode = "reflect" if a.shape[-2] > 1 else "edge"
        a = np.pad(a, [*lead, (top, bottom), (0, 0)], mode=mode)
    if left or right:
        mode = "reflect" if a.shape[-1] > 1 else "edge"
        a = np.pad(a, [*lead, (0, 0), (left, right)], mode=mode)
    return a


def read_padded(src: Any, bands: list[int], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Read a window that may reach past the raster edge, mirroring the image there."""
    inside, pads = clip_with_padding(window, raster_window(src))
    data, valid = read_region(src, bands, inside)
    if any(pads):
        data, valid = _pad(data, pads), _pad(valid, pads)
    return data, valid


def read_overview(
    src: Any, bands: list[int], max_side: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """A decimated view of the whole raster (GDAL uses its overviews when present)."""
    f = max(1.0, max(src.width, src.height) / max_side)
    shape = (len(bands), max(1, round(src.height / f)), max(1, round(src.width / f)))
    data = src.read(bands, out_shape=shape, resampling=Resampling.nearest)
    masks = src.read_masks(bands, out_shape=shape, resampling=Resampling.nearest)
    valid = masks.any(axis=0)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(axis=0)
    return data, valid


# -- regions of interest -----------------------------------------------------------------------
def window_from_bounds(
    src: Any, bounds: tuple[float, float, float, float], crs: Any = None
) -> Window:
    """Pixels of ``src`` covering map ``bounds`` (xmin, ymin, xmax, ymax), snapped outward.

    ``crs`` is the bounds' CRS (default: the raster's). The result is clipped to the raster.
    """
    xmin, ymin, xmax, ymax = (float(v) for v in bounds)
    if not (xmin < xmax and ymin < ymax):
        raise InputError(f"ROI bounds must be xmin < xmax and ymin < ymax, got {bounds}")
    if crs is not None and src.crs is not None and rasterio.crs.CRS.from_user_input(crs) != src.crs:
        from rasterio.warp import transform_bounds

        xmin, ymin, xmax, ymax = transform_bounds(crs, src.crs, xmin, ymin, xmax, ymax)
    # the four corners in pixel space (rasterio's from_bounds, minus its north-up check)
    rows, cols = rowcol(src.transform, [xmin, xmax, xmax, xmin], [ymax, ymax, ymin, ymin], op=float)
    eps = 1e-6
    c0, c1 = math.floor(min(cols) + eps), math.ceil(max(cols) - eps)
    r0, r1 = math.floor(min(rows) + eps), math.ceil(max(rows) - eps)
    win = intersection(
        Window(row_off=r0, col_off=c0, height=max(r1 - r0, 1), width=max(c1 - c0, 1)),
        raster_window(src),
    )
    if win is None:
        raise InputError(f"the ROI {bounds} does not overlap the raster {src.name}")
    return win


def window_from_pixels(src: Any, roi: tuple[int, int, int, int]) -> Window:
    """A pixel ROI ``(col_off, row_off, width, height)``; it must lie inside the raster."""
    col, row, width, height = (int(v) for v in roi)
    win = Window(row_off=row, col_off=col, height=height, width=width)
    if width < 1 or height < 1 or intersection(win, raster_window(src)) != win:
        raise InputError(
            f"pixel ROI (col {col}, row {row}, {width}x{height}) is not inside the raster "
            f"({src.width}x{src.height})"
        )
    return win


# -- output profiles ---------------------------------------------------------------------------
def _compression(dtype: str, compress: str) -> dict[str, Any]:
    if compress not in COMPRESSIONS:
        raise InputError(f"compress must be one of {COMPRESSIONS}, got {compress!r}")
    if compress == "none":
        return {}
    predictor = 3 if np.dtype(dtype).kind == "f" else 2
    return {"compress": compress, "predictor": predictor}


def output_profile(
    src: Any,
    *,
    region: Window,
    scale: int,
    count: int,
    dtype: str,
    nodata: float | None,
    block: int,
    compress: str = "deflate",
    photometric: str | None = None,
    alpha: bool = False,
) -> dict[str, Any]:
    """The SR GeoTIFF's profile: the region's georeferencing at ``scale`` times the resolution.

    A raster without a geotransform gets none (never an invented one): its GCPs, if any, are
    carried scaled by :func:`write_gcps`, and a warning says so.
    """
    kind = georef_kind(src)
    transform: Affine | None = window_transform(src, region) @ Affine.scale(1.0 / scale)
    crs = src.crs
    if kind != "transform":
        transform, crs = None, None
        warnings.warn(
            _GEOREF_WARNINGS[kind].format(name=Path(src.name).name), UserWarning, stacklevel=3
        )
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": region.width * scale,
        "height": region.height * scale,
        "count": count,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "interleave": "pixel",
        "BIGTIFF": "IF_SAFER",
        **_compression(dtype, compress),
    }
    if photometric:
        profile["photometric"] = photometric
    if alpha:
        profile["alpha"] = "YES"
    return profile


def qa_profile(src: Any, *, region: Window, count: int, block: int) -> dict[str, Any]:
    """The consistency layer: float32 on the input's grid over the same region, NaN = no data."""
    georef = georef_kind(src) == "transform"
    return {
        "driver": "GTiff",
        "width": region.width,
        "height": region.height,
        "count": count,
        "dtype": "float32",
        "crs": src.crs if georef else None,
        "transform": window_transform(src, region) if georef else None,
        "nodata": float("nan"),
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "BIGTIFF": "IF_SAFER",
        **_compression("float32", "deflate"),
    }


_GEOREF_WARNINGS = {
    "gcps": "{name} is georeferenced by ground control points only: the output carries them "
    "scaled to its pixels (not warped); warp the input first (gdalwarp) for a map-aligned grid",
    "none": "{name} has no georeferencing (no geotransform, no GCPs): the output has none either",
}


def georef_kind(src: Any) -> str:
    """``transform`` (a geotransform), ``gcps`` (ground control points only) or ``none``."""
    if src.transform != Affine.identity() or (src.crs is not None and not src.gcps[0]):
        return "transform"
    return "gcps" if src.gcps[0] else "none"


def write_gcps(dst: Any, src: Any, region: Window, scale: int) -> None:
    """Carry a GCP-only input's control points to ``dst``, in its pixels (region, scale)."""
    if georef_kind(src) != "gcps":
        return
    from rasterio.control import GroundControlPoint

    points, crs = src.gcps
    dst.gcps = (
        [
            GroundControlPoint(
                row=(g.row - region.row_off) * scale,
                col=(g.col - region.col_off) * scale,
                x=g.x,
                y=g.y,
                z=g.z,
                id=g.id,
                info=g.info,
            )
            for g in points
        ],
        crs,
    )


def photometric_for(meta: BandMeta, dtype: str) -> str | None:
    """``RGB`` when the bands are red, green, blue in order (so viewers show true colour)."""
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if meta.colorinterp == rgb and dtype in ("uint8", "uint16"):
        return "RGB"
    return None


def apply_band_meta(dst: Any, meta: BandMeta, alpha: bool = False) -> None:
    """Copy descriptions, colour interpretation, scales/offsets and units to the output."""
    n = len(meta.colorinterp)
    for i in range(n):
        if meta.descriptions[i]:
            dst.set_band_description(i + 1, meta.descriptions[i])
        if meta.units[i]:
            dst.set_band_unit(i + 1, meta.units[i])
    if alpha:
        dst.set_band_description(n + 1, "alpha")
    ci = list(meta.colorinterp) + ([ColorInterp.alpha] if alpha else [])
    try:
        dst.colorinterp = ci
    except (ValueError, RasterioIOError):  # some combinations are refused by GDAL; keep going
        pass
    if any(s != 1.0 for s in meta.scales) or any(o != 0.0 for o in meta.offsets):
        dst.scales = tuple(meta.scales) + ((1.0,) if alpha else ())
        dst.offsets = tuple(meta.offsets) + ((0.0,) if alpha else ())


# -- files -------------------------------------------------------------------------------------
def partial_path(out: Path, suffix: str = ".partial.tif") -> Path:
    """A fixed temporary name beside ``out`` (``protocol.temp_prefix``: same folder, so the final
    rename is atomic). Runs of the engine use unique names (``engine.lock.unique_temp``)."""
    return out.with_name(protocol.temp_prefix(out.name).rstrip(".") + suffix)


def replace_atomic(tmp: Path, dst: Path) -> None:
    """Rename ``tmp`` onto ``dst`` (atomic within a folder), then flush the folder entry."""
    os.replace(tmp, dst)
    fsync_path(dst.parent)


def remove_quietly(*paths: Path | None) -> None:
    """Delete files and their ``.aux.xml`` sidecars; missing ones are fine."""
    for p in paths:
        if p is None:
            continue
        for q in (p, p.with_name(p.name + ".aux.xml")):
            try:
                q.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                pass


def human_bytes(n: float) -> str:
    """``1.5 GB``, ``320 MB``, ``12 kB``: decimal units, two or three significant figures."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            v = n / size
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{int(n)} bytes"


def estimate_bytes(width: int, height: int, count: int, dtype: str) -> int:
    return int(width) * int(height) * int(count) * np.dtype(dtype).itemsize


def check_free_space(folder: Path, uncompressed: int, compressed: bool, cog: bool) -> None:
    """Refuse to start when the output cannot fit; compressed sizes are guessed at 1/8.

    The run writes an uncompressed partial and copies it into the (compressed) final file or COG
    at the end, so both exist together for a moment.
    """
    need = uncompressed + (uncompressed // 8 if compressed else uncompressed)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DiskSpaceError(
            f"not enough disk space in {folder}: the output needs about {human_bytes(need)} "
            f"({human_bytes(uncompressed)} uncompressed), {human_bytes(free)} free"
        )


def copy_canonical(src_path: Path, dst_path: Path, profile: dict[str, Any]) -> None:
    """Copy a finished partial GeoTIFF into its final file with GDAL's CreateCopy.

    The partial was written in whatever order the run (or an interrupted run and its resume)
    produced blocks; the copy lays blocks out in one canonical order, so the same settings give
    the same bytes however the run was interrupted and resumed.
    """
    from rasterio.shutil import copy as rio_copy

    keys = ("tiled", "blockxsize", "blockysize", "compress", "predictor", "interleave")
    opts = {k: profile[k] for k in keys if k in profile}
    for k in ("BIGTIFF", "photometric", "alpha"):
        if k in profile:
            opts[k] = profile[k]
    rio_copy(str(src_path), str(dst_path), driver="GTiff", **opts)


def write_cog(src_path: Path, dst_path: Path, compress: str, resampling: str) -> None:
    """Copy a finished GeoTIFF to a Cloud Optimized GeoTIFF with overviews."""
    from rasterio.shutil import copy as rio_copy

    opts: dict[str, Any] = {
        "BLOCKSIZE": 256,
        "BIGTIFF": "IF_SAFER",
        "OVERVIEWS": "AUTO",
        "RESAMPLING": resampling,
    }
    if compress != "none":
        opts.update(COMPRESS=compress.upper(), PREDICTOR="YES")
    rio_copy(str(src_path), str(dst_path), driver="COG", **opts)
