"""processing.run of slimdiffsr:superresolve on real GeoTIFFs through the real worker subprocess."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qgis import processing
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis_helpers import pid_alive, wait_until, write_raster

pytestmark = pytest.mark.qgis

ALG = "slimdiffsr:superresolve"
SCALE = 4  # bicubic and the shipped default are both x4


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps every message, so tests can read the worker pid and the log."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def pushInfo(self, info: str) -> None:
        self.messages.append(info)
        super().pushInfo(info)

    def pushConsoleInfo(self, info: str) -> None:
        self.messages.append(info)
        super().pushConsoleInfo(info)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N803
        self.messages.append(error)
        super().reportError(error, fatalError)

    def worker_pid(self) -> int | None:
        for m in self.messages:
            hit = re.search(r"pid (\d+)", m)
            if hit:
                return int(hit.group(1))
        return None


def pattern(bands: int, rows: int, cols: int, high: int, dtype: Any) -> np.ndarray:
    """Smooth, band-distinct test image (fine detail is not the point here)."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    out = [(0.5 + 0.5 * np.sin(x / (5 + 3 * b) + y / (7 + 2 * b))) * high for b in range(bands)]
    return np.stack(out).astype(dtype)


@pytest.fixture
def rgb8(tmp_path: Path) -> Path:
    return write_raster(tmp_path / "rgb8.tif", pattern(3, 40, 56, 255, np.uint8))


@pytest.fixture
def u16(tmp_path: Path) -> Path:
    return write_raster(
        tmp_path / "u16.tif", pattern(3, 36, 44, 10000, np.uint16), epsg=32618, pixel=30.0
    )


@pytest.fixture
def nodata_tif(tmp_path: Path, shared_data: Path) -> Path:
    """The left edge of rasterio's RGB.byte.tif: real Landsat data and its nodata (0) collar."""
    from osgeo import gdal

    src = shared_data / "rasterio" / "RGB.byte.tif"
    if not src.is_file():
        pytest.skip(f"{src} is missing")
    out = tmp_path / "rgb_byte_corner.tif"
    gdal.Translate(str(out), str(src), srcWin=[0, 440, 72, 64])  # collar and land
    return out


def assert_super_resolved(out: str | Path, src: Path, scale: int = SCALE) -> QgsRasterLayer:
    """Same CRS, extent and dtype as the input; pixel size divided by the scale."""
    a = QgsRasterLayer(str(src), "in", "gdal")
    b = QgsRasterLayer(str(out), "out", "gdal")
    assert b.isValid(), out
    assert b.crs() == a.crs()
    px = a.rasterUnitsPerPixelX()
    ea, eb = a.extent(), b.extent()
    for va, vb in zip(
        (ea.xMinimum(), ea.yMinimum(), ea.xMaximum(), ea.yMaximum()),
        (eb.xMinimum(), eb.yMinimum(), eb.xMaximum(), eb.yMaximum()),
    ):
        assert vb == pytest.approx(va, abs=1e-6 * px)
    assert b.rasterUnitsPerPixelX() == pytest.approx(px / scale)
    assert b.rasterUnitsPerPixelY() == pytest.approx(a.rasterUnitsPerPixelY() / scale)
    assert (b.width(), b.height()) == (a.width() * scale, a.height() * scale)
    assert b.bandCount() == a.bandCount()
    for i in range(1, b.bandCount() + 1):
        assert b.dataProvider().dataType(i) == a.dataProvider().dataType(i)
    return b


def test_only_input_and_output(plugin, backend_python, model_name, rgb8, tmp_path) -> None:
    """The defaults work: with the shipped default model, or bicubic until it ships."""
    params: dict[str, Any] = {"INPUT": str(rgb8), "OUTPUT": str(tmp_path / "out.tif")}
    if model_name != "slimdiffsr-nano-x4":
        params["MODEL"] = model_name
    res = processing.run(ALG, params)
    out = assert_super_resolved(res["OUTPUT"], rgb8)
    assert out.dataProvider().dataType(1) == Qgis.Byte
    stats = out.dataProvider().bandStatistics(1)
    assert stats.maximumValue > stats.minimumValue  # not a blank image


def test_self_ensemble_reaches_the_engine(plugin, backend_python, rgb8, tmp_path) -> None:
    """The advanced ENSEMBLE choice travels to the worker: the output records it."""
    from osgeo import gdal

    res = processing.run(
        ALG, {"INPUT": str(rgb8), "ENSEMBLE": "2", "OUTPUT": str(tmp_path / "e2.tif")}
    )
    assert_super_resolved(res["OUTPUT"], rgb8)
    ds = gdal.Open(res["OUTPUT"])
    assert ds.GetMetadataItem("SLIMDIFFSR_ENSEMBLE") == "2"
    band = ds.GetRasterBand(1).ReadAsArray().astype(float)
    assert band.std() > 10  # a picture, not a constant
    ds = None


def test_layer_object_uint16(plugin, backend_python, u16, tmp_path) -> None:
    layer = QgsRasterLayer(str(u16), "u16", "gdal")
    res = processing.run(
        ALG,
        {
            "INPUT": layer,
            "MODEL": "bicubic-x4",
            "TILE_SIZE": 32,
            "OVERLAP": 12,
            "DEVICE": 2,  # cpu
            "OUTPUT": str(tmp_path / "u16_sr.tif"),
        },
    )
    out = assert_super_resolved(res["OUTPUT"], u16)
    assert out.dataProvider().dataType(1) == Qgis.UInt16
    assert out.crs().authid() == "EPSG:32618"


def test_nodata_is_kept(plugin, backend_python, nodata_tif, tmp_path) -> None:
    res = processing.run(
        ALG, {"INPUT": str(nodata_tif), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "nd.tif")}
    )
    out = assert_super_resolved(res["OUTPUT"], nodata_tif)
    dp = out.dataProvider()
    assert dp.sourceHasNoDataValue(1) and dp.sourceNoDataValue(1) == 0
    # the top-left pixel of the window is in the nodata collar, and stays nodata
    corner = QgsPointXY(
        out.extent().xMinimum() + out.rasterUnitsPerPixelX() / 2,
        out.extent().yMaximum() - out.rasterUnitsPerPixelY() / 2,
    )
    value, ok = dp.sample(corner, 1)
    assert not ok or value == 0


def test_extent_in_another_crs(plugin, backend_python, rgb8, tmp_path) -> None:
    layer = QgsRasterLayer(str(rgb8), "rgb8", "gdal")
    e = layer.extent()
    inner = QgsRectangle(
        e.xMinimum() + e.width() * 0.25,
        e.yMinimum() + e.height() * 0.3,
        e.xMinimum() + e.width() * 0.7,
        e.yMinimum() + e.height() * 0.8,
    )
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    to_wgs = QgsCoordinateTransform(layer.crs(), wgs84, QgsProject.instance())
    geo = to_wgs.transformBoundingBox(inner)
    extent = (
        f"{geo.xMinimum():.10f},{geo.xMaximum():.10f},"
        f"{geo.yMinimum():.10f},{geo.yMaximum():.10f} [EPSG:4326]"
    )
    res = processing.run(
        ALG,
        {
            "INPUT": layer,
            "MODEL": "bicubic-x4",
            "EXTENT": extent,
            "OUTPUT": str(tmp_path / "roi.tif"),
        },
    )
    out = QgsRasterLayer(res["OUTPUT"], "roi", "gdal")
    assert out.isValid() and out.crs() == layer.crs()
    px = layer.rasterUnitsPerPixelX()
    assert out.rasterUnitsPerPixelX() == pytest.approx(px / SCALE)
    # what Processing made of the WGS84 extent, in the layer's CRS
    roi = QgsCoordinateTransform(wgs84, layer.crs(), QgsProject.instance()).transformBoundingBox(
        geo
    )
    roi = roi.intersect(e)
    got = out.extent()
    assert got.width() < e.width() and got.height() < e.height()
    for a, b in (
        (got.xMinimum(), roi.xMinimum()),
        (got.yMinimum(), roi.yMinimum()),
        (got.xMaximum(), roi.xMaximum()),
        (got.yMaximum(), roi.yMaximum()),
    ):
        assert a == pytest.approx(b, abs=px)  # snapped to the input's pixel grid
    # the output grid stays aligned with the input grid
    offset = (got.xMinimum() - e.xMinimum()) / (px / SCALE)
    assert offset == pytest.approx(round(offset), abs=1e-6)


def start_task(params: dict[str, Any]) -> tuple[Any, RecordingFeedback, list[tuple[bool, bool]]]:
    """Run the algorithm the way the toolbox and the dock do: in a QgsProcessingAlgRunnerTask."""
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    feedback = RecordingFeedback()
    context = QgsProcessingContext()
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    feedback.keep = (alg, context)  # the task holds C++ references to both
    done: list[tuple[bool, bool]] = []
    task.executed.connect(lambda ok, _res: done.append((ok, task.isCanceled())))
    QgsApplication.taskManager().addTask(task)
    return task, feedback, done


def cancel_and_time(task: Any, done: list) -> float:
    t0 = time.monotonic()
    task.cancel()
    assert wait_until(lambda: bool(done), 60, step=0.01)
    took = time.monotonic() - t0
    print(f"cancel took {took:.2f} s")  # shown with -s
    return took


def test_cancel_between_tiles_keeps_the_warm_worker(plugin, backend_python, tmp_path) -> None:
    """A cancel the worker honours between tiles: done in < 2 s, no file, the worker stays warm."""
    from qgis_plugin import backend

    big = write_raster(tmp_path / "big.tif", pattern(3, 768, 768, 255, np.uint8))
    out = tmp_path / "big_sr.tif"
    params = {
        "INPUT": str(big),
        "MODEL": "bicubic-x4",
        "TILE_SIZE": 32,
        "OVERLAP": 16,
        "DEVICE": 2,
        "OUTPUT": str(out),
    }
    task, feedback, done = start_task(params)
    assert wait_until(lambda: feedback.progress() > 0 or bool(done), 120)
    assert not done, f"finished before it could be cancelled: {feedback.messages[-5:]}"
    pid = feedback.worker_pid()
    assert pid is not None and pid_alive(pid)
    took = cancel_and_time(task, done)
    ok, cancelled = done[0]
    assert not ok and cancelled
    assert took < 2.0, f"cancel took {took:.2f} s"
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if "big_sr" in p.name]  # nor temporaries
    assert pid_alive(pid) and backend.shared_worker_pid() == pid  # idle and reused, no orphan


@pytest.mark.slow
def test_cancel_inside_a_long_tile_kills_within_2s(plugin, backend_python, model_name, tmp_path):
    """The default model on CPU is slow per tile: after the grace the worker is killed, < 2 s."""
    from qgis_plugin import backend

    src = write_raster(tmp_path / "scene.tif", pattern(3, 200, 200, 255, np.uint8))
    out = tmp_path / "scene_sr.tif"
    params = {"INPUT": str(src), "MODEL": model_name, "DEVICE": 2, "OUTPUT": str(out)}
    task, feedback, done = start_task(params)
    assert wait_until(lambda: feedback.worker_pid() is not None or bool(done), 120)
    pid = feedback.worker_pid()
    wait_until(lambda: bool(done), 1.0)  # the model is loading / the first tile is running
    assert not done, feedback.messages[-5:]
    took = cancel_and_time(task, done)
    assert done[0] == (False, True)
    assert took < 2.0, f"cancel took {took:.2f} s"
    assert not [p.name for p in tmp_path.iterdir() if "scene_sr" in p.name]
    if not pid_alive(pid):  # killed: the next run starts a fresh worker
        assert backend.shared_worker_pid() is None


def test_second_run_reuses_the_worker(plugin, backend_python, rgb8, tmp_path) -> None:
    """The warm worker: a second run in the same session starts no new worker process."""
    from qgis_plugin import backend

    pids = []
    starts = backend._Shared.starts
    for i in range(2):
        feedback = RecordingFeedback()
        processing.run(
            ALG,
            {"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / f"r{i}.tif")},
            feedback=feedback,
        )
        pids.append(feedback.worker_pid())
    assert pids[0] is not None and pids[0] == pids[1]
    assert backend._Shared.starts <= starts + 1  # at most the first run started one
    assert pid_alive(pids[0])
    # a worker that died is replaced on the next run
    os.kill(pids[0], signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(pids[0]), 10)
    feedback = RecordingFeedback()
    processing.run(
        ALG,
        {"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "r3.tif")},
        feedback=feedback,
    )
    assert feedback.worker_pid() not in (None, pids[0])


def test_killed_worker_is_reported(plugin, backend_python, tmp_path) -> None:
    """A worker killed by the system (as the OOM killer does) is named, and nothing is left."""
    big = write_raster(tmp_path / "big.tif", pattern(3, 768, 768, 255, np.uint8))
    out = tmp_path / "big_sr.tif"
    feedback = RecordingFeedback()
    killed: list[int] = []

    def kill_when_working() -> None:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            pid = feedback.worker_pid()
            if pid and feedback.progress() > 0:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    threading.Thread(target=kill_when_working, daemon=True).start()
    params = {
        "INPUT": str(big),
        "MODEL": "bicubic-x4",
        "TILE_SIZE": 32,
        "OVERLAP": 16,
        "DEVICE": 2,
        "OUTPUT": str(out),
    }
    with pytest.raises(QgsProcessingException) as info:
        processing.run(ALG, params, feedback=feedback)
    assert killed, "the run ended before the worker could be killed"
    text = str(info.value)
    assert "killed" in text and "out of memory" in text
    assert not [p.name for p in tmp_path.iterdir() if "big_sr" in p.name]


def test_inside_a_processing_model(plugin, backend_python, rgb8, tmp_path) -> None:
    """The algorithm as a step of a graphical model (what the Modeler builds)."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("sr_model", "tests")
    model.addModelParameter(
        QgsProcessingParameterRasterLayer("raster", "Raster"), QgsProcessingModelParameter("raster")
    )
    child = QgsProcessingModelChildAlgorithm("slimdiffsr:superresolve")
    child.setChildId("sr")
    child.addParameterSources(
        "INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("raster")]
    )
    child.addParameterSources(
        "MODEL", [QgsProcessingModelChildParameterSource.fromStaticValue("bicubic-x4")]
    )
    out = QgsProcessingModelOutput("sr_out")
    out.setChildId("sr")
    out.setChildOutputName("OUTPUT")
    child.setModelOutputs({"sr_out": out})
    model.addChildAlgorithm(child)
    res = processing.run(model, {"raster": str(rgb8), "sr:sr_out": str(tmp_path / "model.tif")})
    assert_super_resolved(res["sr:sr_out"], rgb8)
