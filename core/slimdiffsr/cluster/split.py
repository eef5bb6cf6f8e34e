"""Units of work: a raster, or row bands of whole tiles of a big raster, and their assembly.

A band is an engine run with ``roi_window=(0, row_off, width, height)``: the engine reads its
halo from the rows above and below and fits the value mapping on the whole raster, so a band's
pixels are those of the unsplit run. Band heights are multiples of the tile size and of the
output block (in input rows), so the HR band edges fall on block edges and no band ends with a
sliver. Finished bands are mosaicked by a VRT (no copy) and, on request, copied into one COG.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio
from rasterio.enums import MaskFlags

from slimdiffsr.engine import raster_io as rio_io
from slimdiffsr.engine.tiling import output_block_size
from slimdiffsr.errors import InputError

DEFAULT_SPLIT_PIXELS = 16_000_000  # input pixels; an S2 10 m tile (120 Mpx) becomes 8 bands


@dataclass(frozen=True)
class Unit:
    """One task: super-resolve ``input`` (or its rows ``row_off:row_off+height``) into ``output``."""

    key: str
    input: Path
    output: Path
    roi_window: tuple[int, int, int, int] | None = None
    band: int | None = None  # index of the row band; None for a whole raster


@dataclass
class FilePlan:
    """What one input becomes: one unit, or row-band units plus an assembly into ``output``."""

    input: Path
    output: Path
    units: list[Unit] = field(default_factory=list)
    cog: bool = False
    error: str | None = None  # known before any task runs (e.g. the output exists)

    @property
    def split(self) -> bool:
        return any(u.band is not None for u in self.units)


def band_rows(height: int, width: int, split_pixels: int, tile: int, scale: int) -> list[int]:
    """Row offsets of the bands (``[0]`` for no split); each band ~``split_pixels`` input pixels."""
    if height * width <= split_pixels:
        return [0]
    unit = math.lcm(int(tile), output_block_size(scale) // scale)
    rows = max(unit, (split_pixels // max(width, 1)) // unit * unit)
    starts = list(range(0, height, rows))
    if len(starts) > 1 and height - starts[-1] < unit:  # no sliver: the last band absorbs it
        starts.pop()
    return starts


def parts_dir(output: Path) -> Path:
    """Folder of a split output's band files, beside it: ``<stem>.bands/``."""
    return output.with_name(f"{output.stem}.bands")


def plan_file(
    inp: Path,
    output: Path,
    *,
    scale: int,
    tile: int,
    split_pixels: int,
    cog: bool,
    key: str,
    allow_split: bool = True,
) -> FilePlan:
    """Plan one input from its header; an unreadable header is left for the engine to report."""
    size = None
    try:
        with rasterio.open(inp) as src:
            size = (src.height, src.width)
    except Exception:  # noqa: BLE001 - the task reports the engine's own message
        pass
    starts = [0]
    if size is not None and allow_split:
        starts = band_rows(size[0], size[1], split_pixels, tile, scale)
    if len(starts) == 1:
        return FilePlan(inp, output, [Unit(key, inp, output)], cog=cog)
    final = output.with_suffix(".tif" if cog else ".vrt")
    folder = parts_dir(final)
    h, w = size  # type: ignore[misc]
    ends = starts[1:] + [h]
    units = [
        Unit(
            f"{key}-band{i}",
            inp,
            folder / f"rows{r0:06d}-{r1:06d}.tif",
            roi_window=(0, r0, w, r1 - r0),
            band=i,
        )
        for i, (r0, r1) in enumerate(zip(starts, ends))
    ]
    return FilePlan(inp, final, units, cog=cog)


# -- assembly ----------------------------------------------------------------------------------
def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    e = ET.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        e.text = text
    return e


def write_vrt(parts: list[Path], vrt: Path) -> Path:
    """Mosaic row-band GeoTIFFs (same width, grid, bands, dtype) into ``vrt``, atomically.

    Sources are relative to the VRT, so the folder can be moved. Band metadata (nodata, colour
    interpretation, description, tags) and a per-dataset mask come from the first part; the
    dataset tags too, with the ROI of the whole mosaic.
    """
    if not parts:
        raise InputError(f"no bands to assemble into {vrt}")
    infos = []
    for p in parts:
        with rasterio.open(p) as src:
            infos.append((p, src.height, src.width, src.transform, src.crs))
            if p == parts[0]:
                first = {
                    "count": src.count,
                    "dtypes": src.dtypes,
                    "nodata": src.nodata,
                    "colorinterp": src.colorinterp,
                    "descriptions": src.descriptions,
                    "band_tags": [src.tags(b) for b in range(1, src.count + 1)],
                    "tags": src.tags(),
                    "mask": MaskFlags.per_dataset in src.mask_flag_enums[0],
                    "block": src.block_shapes[0],
                }
    _, _, width, t0, crs = infos[0]
    y = 0
    offsets = []
    for p, h, w, t, _ in infos:
        expected_y = t0.f + y * t0.e
        if w != width or abs(t.f - expected_y) > abs(t0.e) * 1e-3 or abs(t.c - t0.c) > 1e-6:
            raise InputError(f"{p} does not continue the band above it in {vrt.name}")
        offsets.append(y)
        y += h
    height = y
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if crs is not None:
        _sub(root, "SRS", crs.to_wkt(), dataAxisToSRSAxisMapping="1,2")
    _sub(root, "GeoTransform", ", ".join(repr(float(v)) for v in t0.to_gdal()))
    tags = dict(first["tags"])
    if "SLIMDIFFSR_ROI" in tags:
        c0, r0, *_ = (int(v) for v in tags["SLIMDIFFSR_ROI"].split(","))
        scale = int(tags.get("SLIMDIFFSR_SCALE", "1"))
        tags["SLIMDIFFSR_ROI"] = f"{c0},{r0},{width // scale},{height // scale}"
    tags["SLIMDIFFSR_ROW_BANDS"] = str(len(parts))
    md = _sub(root, "Metadata")
    for k, v in tags.items():
        _sub(md, "MDI", str(v), key=k)
    gdal_types = {
        "uint8": "Byte",
        "int8": "Int8",
        "uint16": "UInt16",
        "int16": "Int16",
        "uint32": "UInt32",
        "int32": "Int32",
        "float32": "Float32",
        "float64": "Float64",
    }
    bx, by = first["block"][1], first["block"][0]

    def sources(band_el: ET.Element, src_band: str, dtype: str) -> None:
        for (p, h, w, _, _), yoff in zip(infos, offsets):
            s = _sub(band_el, "SimpleSource")
            _sub(s, "SourceFilename", os.path.relpath(p, vrt.parent), relativeToVRT="1")
            _sub(s, "SourceBand", src_band)
            _sub(
                s,
                "SourceProperties",
                RasterXSize=str(w),
                RasterYSize=str(h),
                DataType=dtype,
                BlockXSize=str(bx),
                BlockYSize=str(by),
            )
            _sub(s, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
            _sub(s, "DstRect", xOff="0", yOff=str(yoff), xSize=str(w), ySize=str(h))

    for b in range(first["count"]):
        dtype = gdal_types[first["dtypes"][b]]
        el = _sub(root, "VRTRasterBand", dataType=dtype, band=str(b + 1))
        if first["nodata"] is not None:
            _sub(el, "NoDataValue", repr(float(first["nodata"])))
        _sub(el, "ColorInterp", first["colorinterp"][b].name.capitalize())
        if first["descriptions"][b]:
            _sub(el, "Description", first["descriptions"][b])
        if first["band_tags"][b]:
            bmd = _sub(el, "Metadata")
            for k, v in first["band_tags"][b].items():
                _sub(bmd, "MDI", str(v), key=k)
        sources(el, str(b + 1), dtype)
    if first["mask"]:
        mb = _sub(_sub(root, "MaskBand"), "VRTRasterBand", dataType="Byte")
        sources(mb, "mask,1", "Byte")
    ET.indent(root)
    tmp = rio_io.partial_path(vrt, ".partial.vrt")
    tmp.write_text(ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")
    os.replace(tmp, vrt)
    return vrt


def assemble(parts: list[Path], output: Path, *, cog: bool, compress: str = "deflate") -> Path:
    """VRT over the bands; with ``cog``, one COG at ``output`` and the bands and VRT removed."""
    if not cog:
        return write_vrt(parts, output)
    vrt = write_vrt(parts, output.with_suffix(".vrt"))
    tmp = rio_io.partial_path(output, ".cog.tif")
    try:
        with rasterio.open(vrt) as src:
            continuous = src.colorinterp[0].name != "palette"
        rio_io.write_cog(vrt, tmp, compress, "AVERAGE" if continuous else "NEAREST")
        rio_io.replace_atomic(tmp, output)
    finally:
        rio_io.remove_quietly(tmp)
    rio_io.remove_quietly(vrt, *parts)
    try:
        parts[0].parent.rmdir()
    except OSError:
        pass
    return output


def read_band_tags(path: Path) -> dict[str, Any]:
    """The dataset tags of a finished output (used to recognise a finished earlier attempt)."""
    with rasterio.open(path) as src:
        return dict(src.tags())
