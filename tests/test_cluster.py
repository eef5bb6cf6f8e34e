"""Dask cluster runs, for real: a scheduler and worker processes on loopback, a worker killed
mid-run, row-band splitting, an unreadable input, the STAC catalogue. The bicubic model keeps
the numbers exact (the model does not matter for any of it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from engine_util import texture, write_raster

pytest.importorskip("distributed")
pystac = pytest.importorskip("pystac")

from slimdiffsr.cli import main  # noqa: E402
from slimdiffsr.cluster.split import band_rows, plan_file  # noqa: E402
from slimdiffsr.cluster.stac import write_collection  # noqa: E402
from slimdiffsr.cluster.tasks import assemble_file, run_unit  # noqa: E402

MODEL = "bicubic-x4"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# -- helpers -----------------------------------------------------------------------------------
def make_inputs(folder: Path, n: int = 6, size: tuple[int, int] = (256, 224)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_raster(folder / f"s{i}.tif", (texture(3, *size, seed=i) * 255).astype(np.uint8))
        for i in range(n)
    ]


def reference(inputs: list[Path], folder: Path) -> None:
    """The single-process run (the CLI without --cluster), the baseline for every comparison."""
    args = ["upscale", str(inputs[0].parent), str(folder), "-m", MODEL, "--device", "cpu", "-q"]
    if len(inputs) == 1:
        args[1], args[2] = str(inputs[0]), str(folder / f"{inputs[0].stem}_x4.tif")
    assert main(args) == 0


def assert_same_pixels(a: Path, b: Path, tol: int = 1) -> None:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert (x.width, x.height, x.count) == (y.width, y.height, y.count), (a, b)
        assert x.transform.almost_equals(y.transform) and x.crs == y.crs
        dx, dy = x.read().astype(np.int32), y.read().astype(np.int32)
    assert dx.std() > 5  # real imagery, not a constant
    diff = np.abs(dx - dy)
    assert diff.max() <= tol, f"{a.name}: max |diff| {diff.max()} DN"


def leftovers(folder: Path) -> list[Path]:
    """Temporary or partial files (hidden names, *partial*, *.tmp) anywhere under ``folder``."""
    return [
        p
        for p in folder.rglob("*")
        if p.name.startswith(".") or "partial" in p.name or p.suffix in (".tmp", ".lock")
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def validate_catalogue(path: Path, n_items: int) -> None:
    """pystac's JSON-schema validation; offline, the extension schemas cannot be fetched, so the
    core STAC 1.1 schemas (bundled with pystac) validate every object and the projection fields
    are read back through pystac's object model."""
    from pystac.extensions.projection import ProjectionExtension
    from pystac.validation import validate_dict
    from pystac.validation.stac_validator import GetSchemaError

    coll = pystac.Collection.from_file(str(path))
    items = list(coll.get_items(recursive=True))
    assert len(items) == n_items
    try:
        coll.validate_all()
    except GetSchemaError:
        validate_dict(coll.to_dict(), extensions=[])
        for it in items:
            validate_dict(it.to_dict(), extensions=[])
    for it in items:
        proj = ProjectionExtension.ext(it)
        href = Path(it.assets["data"].get_absolute_href())
        with rasterio.open(href) as src:
            assert proj.shape == [src.height, src.width]
            assert proj.epsg == src.crs.to_epsg()
            assert list(proj.transform) == pytest.approx(list(src.transform)[:6])
            tags = src.tags()
        p = it.properties
        assert p["slimdiffsr:model_hash"] == tags["SLIMDIFFSR_MODEL_HASH"] == "bicubic-x4"
        assert p["slimdiffsr:scale"] == 4
        src_path = Path(p["slimdiffsr:source_path"])
        import hashlib

        assert p["slimdiffsr:source_sha256"] == hashlib.sha256(src_path.read_bytes()).hexdigest()
        lon0, lat0, lon1, lat1 = it.bbox
        assert -180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90


# -- fast: planning, bands, assembly, catalogue (in process, no cluster) -------------------------
def test_band_rows_are_whole_tiles_and_cover_the_raster():
    assert band_rows(500, 400, 10**9, 128, 4) == [0]
    starts = band_rows(1000, 300, 128 * 300, 128, 4)
    assert starts[0] == 0 and all(s % 128 == 0 for s in starts)
    assert len(starts) == 7  # 1000 / 128 -> 7 bands, the 104-row rest absorbed by the last
    assert 1000 - starts[-1] >= 128  # no sliver: the last band is at least a tile
    assert band_rows(1000, 300, 256 * 300, 128, 4) == [0, 256, 512, 768]


def test_split_raster_equals_unsplit_and_is_catalogued(tmp_path):
    """Row bands run separately (as on two workers), mosaicked by a VRT and by a COG, give the
    unsplit run's pixels; the catalogue describes the result."""
    big = write_raster(tmp_path / "big.tif", (texture(3, 600, 200, seed=7) * 255).astype(np.uint8))
    ref = tmp_path / "ref"
    reference([big], ref)
    kwargs = {"device": "cpu"}
    recs = []
    for cog in (False, True):
        out = tmp_path / ("cog" if cog else "vrt") / "big_x4.tif"
        plan = plan_file(
            big, out, scale=4, tile=128, split_pixels=200 * 200, cog=cog, key=f"k{cog}"
        )
        assert [u.roi_window for u in plan.units] == [
            (0, 0, 200, 128),
            (0, 128, 200, 128),
            (0, 256, 200, 128),
            (0, 384, 200, 216),
        ]
        bands = [run_unit(u, MODEL, kwargs, {"compress": "deflate"}) for u in plan.units]
        assert all(b["status"] == "ok" for b in bands), bands
        rec = assemble_file(plan, "deflate", *bands)
        assert rec["status"] == "ok", rec
        assert_same_pixels(Path(rec["output"]), ref / "big_x4.tif")
        with rasterio.open(rec["output"]) as src:
            assert src.driver == ("GTiff" if cog else "VRT")
            assert src.tags()["SLIMDIFFSR_ROI"] == "0,0,200,600"
        if cog:  # the COG replaces the bands and the VRT
            assert not (out.parent / "big_x4.bands").exists()
            assert sorted(p.name for p in out.parent.iterdir()) == ["big_x4.tif"]
        assert rec["summary"]["output_size"] == [800, 2400]
        recs.append(rec)
    assert not leftovers(tmp_path)
    coll = write_collection([recs[0]], tmp_path / "vrt")
    validate_catalogue(coll, 1)
    item = json.loads((tmp_path / "vrt" / "items" / "big_x4.json").read_text())
    assert item["assets"]["data"]["href"] == "../big_x4.vrt"
    assert item["assets"]["data"]["bands"][0]["data_type"] == "uint8"


def test_a_raster_that_fails_for_its_own_reason_is_a_record_not_an_exception(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    plan = plan_file(
        bad, tmp_path / "o" / "bad_x4.tif", scale=4, tile=128, split_pixels=1, cog=0, key="b"
    )
    assert not plan.split  # an unreadable header is left for the engine to report
    rec = run_unit(plan.units[0], MODEL, {"device": "cpu"}, {})
    assert rec["status"] == "failed" and rec["kind"] == "input"
    assert "bad.tif" in rec["error"] and "raster" in rec["error"]


# -- slow: real clusters -----------------------------------------------------------------------
@pytest.mark.slow
def test_scheduler_and_two_workers_survive_a_killed_worker(tmp_path):
    """`dask scheduler` + two `dask worker` processes; one worker is killed once the first
    output exists. All 6 outputs still come out, equal to the single-process run, nothing
    temporary is left, and the killed worker's task was retried."""
    from distributed import Client

    inputs = make_inputs(tmp_path / "in")
    reference(inputs, tmp_path / "ref")
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    scratch = tmp_path / "dask-scratch"
    procs: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        log = open(tmp_path / f"log{len(procs)}.txt", "w")  # noqa: SIM115
        p = subprocess.Popen([str(BIN / "dask"), *argv], env=ENV, stdout=log, stderr=log)
        procs.append(p)
        return p

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0")
        workers = [
            start(
                "worker", addr, "--nthreads", "1", "--nworkers", "1", "--no-nanny",
                "--local-directory", str(scratch), "--name", f"w{i}",
            )
            for i in range(2)
        ]  # fmt: skip
        with Client(addr, timeout=60) as c:
            c.wait_for_workers(2, timeout=120)
        out = tmp_path / "out"
        cli = subprocess.Popen(
            [str(BIN / "slimdiffsr"), "upscale", str(tmp_path / "in" / "*.tif"), str(out)]
            + ["--cluster", addr, "-m", MODEL, "--device", "cpu"],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 240
        while not list(out.glob("s*_x4.tif")):
            assert cli.poll() is None, cli.communicate()
            assert time.monotonic() < deadline, "no output within 240 s"
            time.sleep(0.05)
        time.sleep(0.2)  # both workers are inside a raster now
        workers[0].send_signal(signal.SIGKILL)
        stdout, stderr = cli.communicate(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    print(stdout)
    assert cli.returncode == 0, stdout + stderr
    assert "Dask dashboard: http" in stderr
    assert stdout.count("\nok ") + stdout.startswith("ok ") == 6, stdout
    assert "retried" in stdout, stdout  # the killed worker's raster ran again elsewhere
    for inp in inputs:
        assert_same_pixels(out / f"{inp.stem}_x4.tif", tmp_path / "ref" / f"{inp.stem}_x4.tif")
    assert not leftovers(out), leftovers(out)
    assert sorted(p.name for p in out.glob("*.tif")) == [f"s{i}_x4.tif" for i in range(6)]


@pytest.mark.slow
def test_local_cluster_same_files_split_and_a_bad_input(tmp_path):
    """`--cluster local:2`: the 6 rasters give the single-process files; a raster over
    --split-pixels is done in row bands over the workers and equals its unsplit run; an
    unreadable file is named with its reason, the others finish, the exit code is 2."""
    inputs = make_inputs(tmp_path / "in")
    ref = tmp_path / "ref"
    reference(inputs, ref)
    (tmp_path / "big").mkdir()
    big = write_raster(
        tmp_path / "big" / "big.tif", (texture(3, 640, 180, seed=11) * 255).astype(np.uint8)
    )
    reference([big], ref)
    (tmp_path / "in" / "big.tif").write_bytes(big.read_bytes())
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00garbage")
    out = tmp_path / "out"
    cmd = [str(BIN / "slimdiffsr"), "upscale", str(tmp_path / "in"), str(out)]
    cmd += ["--cluster", "local:2", "-m", MODEL, "--device", "cpu", "--split-pixels", "60000"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=400)
    print(r.stdout)
    assert r.returncode == 2, r.stdout + r.stderr
    bad = [ln for ln in r.stdout.splitlines() if ln.startswith("FAILED")]
    assert len(bad) == 1 and "broken.tif" in bad[0] and "cannot read" in bad[0], r.stdout
    assert "8 files: 7 ok, 1 failed" in r.stdout
    for inp in inputs:
        assert_same_pixels(out / f"{inp.stem}_x4.tif", ref / f"{inp.stem}_x4.tif")
    big_line = next(ln for ln in r.stdout.splitlines() if "big.tif" in ln)
    assert f"{len(band_rows(640, 180, 60000, 128, 4))} row bands" in big_line, big_line
    assert_same_pixels(out / "big_x4.vrt", ref / "big_x4.tif")
    assert not leftovers(out), leftovers(out)
    assert not (out / "broken_x4.tif").exists()
    validate_catalogue(out / "collection.json", 7)


@pytest.mark.slow
def test_python_api_with_an_in_process_cluster(tmp_path):
    """``upscale_many`` on a threads-only cluster object: records in input order, the summary,
    the catalogue; a second run into the same folder refuses to overwrite and keeps the items."""
    from distributed import Client, LocalCluster

    from slimdiffsr.cluster import upscale_many
    from slimdiffsr.cluster.submit import format_summary

    inputs = make_inputs(tmp_path / "in", n=3, size=(96, 96))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as lc, Client(lc) as c:
        res = upscale_many(
            inputs, tmp_path / "out", cluster=c, model=MODEL, device="cpu", timeout=300
        )
        assert res.ok and [Path(r["input"]) for r in res.records] == inputs
        lines = format_summary(res)
        assert lines[-2].startswith("3 files: 3 ok, 0 failed")
        again = upscale_many(
            inputs[:1], tmp_path / "out", cluster=c, model=MODEL, device="cpu", timeout=300
        )
    assert not again.ok and "exists" in again.failed[0]["error"]
    validate_catalogue(tmp_path / "out" / "collection.json", 3)


def test_a_retry_waits_for_an_attempt_that_still_holds_the_output(tmp_path):
    """A task the scheduler gave to another worker while the first attempt is still writing (a
    worker cut off, not dead) waits for the engine's output lock instead of failing the raster."""
    import threading

    from slimdiffsr.engine.lock import OutputLock

    inp = make_inputs(tmp_path / "in", n=1, size=(64, 64))[0]
    plan = plan_file(
        inp,
        tmp_path / "out" / "s0_x4.tif",
        scale=4,
        tile=128,
        split_pixels=10**9,
        cog=False,
        key="k",
    )
    (tmp_path / "out").mkdir()
    lock = OutputLock(plan.output).acquire()
    result: dict = {}
    t = threading.Thread(
        target=lambda: result.update(run_unit(plan.units[0], MODEL, {"device": "cpu"}, {}))
    )
    t.start()
    time.sleep(1.0)
    assert t.is_alive() and not plan.output.exists()  # waiting, not failed
    lock.release()
    t.join(timeout=120)
    assert not t.is_alive() and result["status"] == "ok", result
    reference([inp], tmp_path / "ref")
    assert_same_pixels(plan.output, tmp_path / "ref" / "s0_x4.tif")
