"""Helpers shared by the plugin tests (imported by name; QGIS is imported lazily)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_raster(
    path: Path,
    bands: Any,
    gdal_type: int | None = None,
    epsg: int = 32633,
    origin: tuple[float, float] = (500000.0, 4200000.0),
    pixel: float = 10.0,
    nodata: float | None = None,
) -> Path:
    """Write a (bands, rows, cols) numpy array as a tiled GeoTIFF with GDAL from osgeo."""
    from osgeo import gdal, gdal_array, osr

    gdal.UseExceptions()
    n, h, w = bands.shape
    gdal_type = gdal_type or gdal_array.NumericTypeCodeToGDALTypeCode(bands.dtype)
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), w, h, n, gdal_type, options=["TILED=YES", "COMPRESS=DEFLATE"]
    )
    ds.SetGeoTransform((origin[0], pixel, 0.0, origin[1], 0.0, -pixel))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for i in range(n):
        band = ds.GetRasterBand(i + 1)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(bands[i])
    ds.FlushCache()
    ds = None
    return path


def wait_until(cond: Callable[[], bool], timeout: float = 120.0, step: float = 0.05) -> bool:
    """Spin the Qt event loop until ``cond()`` holds (tasks report through queued signals)."""
    from qgis.PyQt.QtCore import QCoreApplication

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if cond():
            return True
        time.sleep(step)
    QCoreApplication.processEvents()
    return cond()


def pid_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
