"""Satellite products as inputs: Sentinel-2 L1C/L2A ``.SAFE`` (folder or ``.zip``), Landsat C2 L2.

A product is read as one virtual raster (GDAL VRT, built in memory) over its band files, in an
order the RGB model understands: red, green, blue, then near-infrared. Each band carries the
product's own ``physical = DN * scale + offset`` as GDAL band scale/offset (Sentinel-2: 1/10,000
and, from processing baseline 04.00, ``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET``; Landsat C2 L2:
0.0000275 and -0.2 from the MTL file), nodata 0, so the value mapping reads true reflectance and the
output keeps the same scale/offset. GDAL's SENTINEL2 driver is not used: it needs the complete
product metadata, while the band files (JPEG 2000 / GeoTIFF) and two metadata values are enough.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio

from slimdiffsr.errors import InputError

# Sentinel-2 10 m bands in output order, with their band_id in the metadata's offset lists
S2_BANDS = (("B04", "red", 3), ("B03", "green", 2), ("B02", "blue", 1), ("B08", "nir", 7))
LANDSAT_BANDS = (
    ("SR_B4", "red", 4),
    ("SR_B3", "green", 3),
    ("SR_B2", "blue", 2),
    ("SR_B5", "nir", 5),
)
_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}
_INTERP = {"red": "Red", "green": "Green", "blue": "Blue", "nir": "Undefined"}


class ProductError(InputError):
    """A product folder or archive is incomplete or its metadata unreadable."""


@dataclass(frozen=True)
class ProductBand:
    path: str  # a GDAL path (``/vsizip/...`` inside archives)
    name: str  # "B04", "SR_B4"
    role: str  # "red" | "green" | "blue" | "nir"
    scale: float
    offset: float


@dataclass(frozen=True)
class Product:
    """A recognised product: its kind, display name and band files."""

    kind: str  # "Sentinel-2 L2A" ...
    name: str
    bands: tuple[ProductBand, ...]
    nodata: float = 0.0

    def vrt(self) -> str:
        """The VRT XML stacking the bands (GDAL opens it as a raster)."""
        with rasterio.open(self.bands[0].path) as first:
            width, height, crs, tr = first.width, first.height, first.crs, first.transform
            dtype = first.dtypes[0]
        parts = [
            f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
            f"<SRS>{escape(crs.to_wkt()) if crs else ''}</SRS>",
            f"<GeoTransform>{', '.join(repr(v) for v in tr.to_gdal())}</GeoTransform>",
            f'<Metadata><MDI key="SLIMDIFFSR_PRODUCT">{escape(self.kind)}</MDI>'
            f'<MDI key="SLIMDIFFSR_PRODUCT_NAME">{escape(self.name)}</MDI></Metadata>',
        ]
        for i, b in enumerate(self.bands, start=1):
            with rasterio.open(b.path) as s:
                if (s.width, s.height) != (width, height) or s.transform != tr:
                    raise ProductError(f"{self.name}: {b.name} is not on the grid of the others")
                if s.dtypes[0] != dtype:
                    raise ProductError(f"{self.name}: {b.name} is {s.dtypes[0]}, not {dtype}")
            parts.append(
                f'<VRTRasterBand dataType="{_GDAL_TYPES.get(dtype, "UInt16")}" band="{i}">'
                f"<Description>{b.name} {b.role}</Description>"
                f"<ColorInterp>{_INTERP[b.role]}</ColorInterp>"
                f"<NoDataValue>{self.nodata:g}</NoDataValue>"
                f"<Offset>{b.offset!r}</Offset><Scale>{b.scale!r}</Scale>"
                f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(b.path)}'
                "</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
            )
        parts.append("</VRTDataset>")
        return "".join(parts)


# -- Sentinel-2 ----------------------------------------------------------------------------------
def _s2_offsets(xml_text: str) -> tuple[float, dict[int, float], str]:
    """(quantification, band_id -> additive offset, processing baseline) from MTD_MSIL1C/2A."""
    root = ET.fromstring(xml_text)
    quant, offsets, baseline = 10000.0, {}, ""
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in ("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE") and el.text:
            quant = float(el.text)
        elif tag in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET") and el.text:
            offsets[int(el.get("band_id", "-1"))] = float(el.text)
        elif tag == "PROCESSING_BASELINE" and el.text:
            baseline = el.text.strip()
    return quant, offsets, baseline


def _s2(path: Path) -> Product | None:
    """A ``.SAFE`` folder, or a ``.zip`` holding one."""
    if path.is_dir() and path.name.upper().endswith(".SAFE"):
        names = [str(p.relative_to(path.parent)) for p in path.rglob("*") if p.is_file()]
        prefix, read = str(path.parent) + "/", lambda n: (path.parent / n).read_text("utf-8")
    elif path.is_file() and path.suffix.lower() == ".zip" and ".SAFE" in path.name.upper():
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise ProductError(f"{path.name} is not a readable zip archive ({e})") from e
        names = zf.namelist()
        prefix = f"/vsizip/{path.resolve()}/"

        def read(n: str) -> str:
            return zf.read(n).decode("utf-8")
    else:
        return None
    mtd = next((n for n in names if re.search(r"MTD_MSIL(1C|2A)\.xml$", n)), None)
    if mtd is None:
        raise ProductError(f"{path.name}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml in the product")
    level = "L2A" if mtd.endswith("2A.xml") else "L1C"
    quant, offsets, baseline = _s2_offsets(read(mtd))
    bands = []
    for name, role, band_id in S2_BANDS:
        pat = (
            rf"IMG_DATA/R10m/[^/]*_{name}_10m\.jp2$"
            if level == "L2A"
            else rf"IMG_DATA/[^/]*_{name}\.jp2$"
        )
        hit = next((n for n in names if re.search(pat, n)), None)
        if hit is None:
            raise ProductError(f"{path.name}: the 10 m band {name} is missing")
        bands.append(
            ProductBand(prefix + hit, name, role, 1.0 / quant, offsets.get(band_id, 0.0) / quant)
        )
    kind = f"Sentinel-2 {level}" + (f" (baseline {baseline})" if baseline else "")
    return Product(kind, path.name, tuple(bands))


# -- Landsat Collection 2 Level-2 ----------------------------------------------------------------
def _mtl_values(text: str) -> dict[str, str]:
    return {m[1]: m[2].strip('"') for m in re.finditer(r"^\s*(\w+)\s*=\s*(.+?)\s*$", text, re.M)}


def _landsat(path: Path) -> Product | None:
    """A Landsat C2 L2 folder, or its ``*_MTL.txt``."""
    if path.is_file() and path.name.upper().endswith("_MTL.TXT"):
        mtl, folder = path, path.parent
    elif path.is_dir():
        mtl = next(iter(sorted(path.glob("*_MTL.txt"))), None)
        if mtl is None:
            return None
        folder = path
    else:
        return None
    meta = _mtl_values(mtl.read_text("utf-8", errors="replace"))
    stem = mtl.name[: -len("_MTL.txt")]
    if "_L2S" not in stem.upper() and "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS" not in mtl.read_text(
        "utf-8", errors="replace"
    ):
        raise ProductError(f"{mtl.name}: not a Landsat Collection 2 Level-2 product (no SR bands)")
    bands = []
    for name, role, n in LANDSAT_BANDS:
        f = folder / f"{stem}_{name}.TIF"
        if not f.exists():
            if role == "nir":
                continue  # near-infrared is kept when present
            raise ProductError(f"{mtl.name}: the band file {f.name} is missing")
        scale = float(meta.get(f"REFLECTANCE_MULT_BAND_{n}", 2.75e-05))
        offset = float(meta.get(f"REFLECTANCE_ADD_BAND_{n}", -0.2))
        bands.append(ProductBand(str(f), name, role, scale, offset))
    return Product("Landsat C2 L2", stem, tuple(bands))


def detect(path: str | Path) -> Product | None:
    """The product at ``path``, None for a plain raster; incomplete products raise."""
    p = Path(path)
    if str(path).startswith("/vsi") or not p.exists():
        return None
    return _s2(p) or _landsat(p)
