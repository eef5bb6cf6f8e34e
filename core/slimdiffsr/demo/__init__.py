"""The demo raster shipped with the package (a 128x128 NEON TEAK plot crop, CC0)."""

from __future__ import annotations

from pathlib import Path

DEMO_FILE = "neon_teak_043_crop.tif"


def demo_path() -> Path:
    """Path of the demo GeoTIFF inside the installed package."""
    return Path(__file__).resolve().parent / DEMO_FILE
