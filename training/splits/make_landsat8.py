"""Write the Landsat-8 part of the training split as small VRT files (run once; outputs committed).

``../shared/data/landsat8`` is a uint16 Level-1 scene (bands B2, B3, B4 = blue, green, red; zero
collar without a nodata tag). The VRTs

- reorder the bands to red, green, blue and declare DN 0 as nodata;
- apply the percentile value contract (0.5-99.5 %, per band) fitted ONCE on a raster-wide
  overview of the whole scene with :meth:`slimdiffsr.contract.ValueContract.fit` (what the engine
  does for a percentile contract), as a linear scale to Float32: the dataset's float contract
  (fixed 0-1, clipped) then yields exactly the percentile-contract values;
- hold back a strip: rows 0-1599 are cut into 4 x 5 training tiles of 400 x 408 px
  (``landsat8_train_{r}{c}.vrt``; tiles under 60 % valid, in the collar, are left out) so the scene
  weighs like ~16 images in the crop sampler, not one; rows 1604-1859 are cut into seven 256 x 256
  validation tiles (``landsat8_val_{k}.vrt``), a 4-row gap between train and validation.

Usage (from the project root)::

    python training/splits/make_landsat8.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio

from slimdiffsr.contract import ValueContract

HERE = Path(__file__).resolve().parent
SCENE = (
    HERE.parents[2]
    / "shared"
    / "data"
    / "landsat8"
    / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
)
OUT = HERE / "landsat8"
RGB_FROM = (3, 2, 1)  # source bands B4, B3, B2
TRAIN_TILE, TRAIN_GRID, MIN_VALID = (400, 408), (4, 5), 0.6
VAL_ROW, VAL_TILE, VAL_TILES = 1604, 256, 7


def fit_contract(src: rasterio.DatasetReader) -> ValueContract:
    f = max(1, max(src.height, src.width) // 512)
    shape = (3, src.height // f, src.width // f)
    sample = src.read(list(RGB_FROM), out_shape=shape)
    valid = (sample > 0).all(axis=0)
    return ValueContract("percentile", p_low=0.5, p_high=99.5).fit(sample, valid)


def vrt(src: rasterio.DatasetReader, vc: ValueContract, col: int, row: int, w: int, h: int) -> str:
    rel = os.path.relpath(SCENE, OUT)
    t = src.transform * rasterio.Affine.translation(col, row)
    gt = ", ".join(repr(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    bands = []
    for i, (b, name) in enumerate(zip(RGB_FROM, ("Red", "Green", "Blue"), strict=True)):
        lo, hi = vc.low[i], vc.high[i]
        bands.append(f"""  <VRTRasterBand dataType="Float32" band="{i + 1}">
    <NoDataValue>-1</NoDataValue>
    <ColorInterp>{name}</ColorInterp>
    <ComplexSource>
      <SourceFilename relativeToVRT="1">{rel}</SourceFilename>
      <SourceBand>{b}</SourceBand>
      <SrcRect xOff="{col}" yOff="{row}" xSize="{w}" ySize="{h}" />
      <DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}" />
      <NODATA>0</NODATA>
      <ScaleOffset>{-lo / (hi - lo)!r}</ScaleOffset>
      <ScaleRatio>{1.0 / (hi - lo)!r}</ScaleRatio>
    </ComplexSource>
  </VRTRasterBand>""")
    return (
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">\n'
        f"  <SRS>{src.crs.to_wkt()}</SRS>\n  <GeoTransform>{gt}</GeoTransform>\n"
        + "\n".join(bands)
        + "\n</VRTDataset>\n"
    )


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with rasterio.open(SCENE) as src:
        vc = fit_contract(src)
        valid = src.read(1) > 0
        th, tw = TRAIN_TILE
        for r in range(TRAIN_GRID[0]):
            for c in range(TRAIN_GRID[1]):
                if valid[r * th : (r + 1) * th, c * tw : (c + 1) * tw].mean() < MIN_VALID:
                    continue
                text = vrt(src, vc, c * tw, r * th, tw, th)
                (OUT / f"landsat8_train_{r}{c}.vrt").write_text(text)
        for k in range(VAL_TILES):
            text = vrt(src, vc, k * VAL_TILE, VAL_ROW, VAL_TILE, VAL_TILE)
            (OUT / f"landsat8_val_{k}.vrt").write_text(text)
    (OUT / "contract.json").write_text(json.dumps(vc.to_dict(), indent=1) + "\n")
    print("contract", vc.describe())


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
