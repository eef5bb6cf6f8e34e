"""Faults and hostile input give one line, never a traceback; outputs have one writer (issue 14).

Bad model files and rasters go through the real CLI entry point (``cli.main``); signals, crashes and
concurrent runs through real ``slimdiffsr`` processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from engine_util import texture, write_raster
from safetensors.torch import save_file

from slimdiffsr import cli, protocol
from slimdiffsr.engine.manifest import Manifest
from slimdiffsr.engine.raster_io import human_bytes
from slimdiffsr.engine.run import upscale
from slimdiffsr.errors import error_kind, one_line
from slimdiffsr.models.card import CARD_KEY, ModelCard, ModelFileError, read_card
from slimdiffsr.models.registry import ZOO_DIR, load_model
from slimdiffsr.worker import error_message

DEFAULT_FILE = ZOO_DIR / "slimdiffsr-nano-x4.safetensors"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *needles: str) -> None:
    """Exactly one error line (info lines such as the value mapping may precede it)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("slimdiffsr: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "  File " not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def small(tmp_path):
    data = (texture(3, 40, 40, seed=70) * 255).astype(np.uint8)
    return write_raster(tmp_path / "in.tif", data)


# -- degenerate model cards are refused at load, with one line ---------------------------------
def _good_card() -> dict:
    return json.loads(read_card(DEFAULT_FILE).to_json())


def _card_file(path, card_text: str):
    save_file({"x": torch.zeros(1)}, str(path), metadata={CARD_KEY: card_text})
    return path


BAD_CARDS = {
    "card is a number": ("5", "must be a JSON object"),
    "scale is a string": ({"scale": "4"}, "scale must be one of"),
    "scale 3": ({"scale": 3}, "scale must be one of"),
    "one band for three channels": ({"bands": ["red"]}, "1 band name(s)"),
    "config null": ({"config": None}, "config must be a JSON object"),
    "low equals high": (
        {"value_contract": {"kind": "fixed", "low": [100.0], "high": [100.0]}},
        "high > low",
    ),
    "low nan": ({"value_contract": {"kind": "fixed", "low": "nan", "high": 1}}, "finite"),
    "halo negative": ({"halo": -3}, "halo"),
}


@pytest.mark.parametrize("case", list(BAD_CARDS), ids=list(BAD_CARDS))
def test_degenerate_card_is_one_model_error_line(case, small, tmp_path, capsys):
    change, needle = BAD_CARDS[case]
    text = change if isinstance(change, str) else json.dumps({**_good_card(), **change})
    bad = _card_file(tmp_path / "bad.safetensors", text)
    with pytest.raises(ModelFileError, match=re.escape(needle)):
        ModelCard.from_json(text, bad)
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        load_model(str(bad))
    code, _, err = run_cli(capsys, "upscale", small, tmp_path / "o.tif", "--model", bad)
    assert code == 2
    assert_one_line(err, "bad.safetensors", needle)
    assert not (tmp_path / "o.tif").exists()


def test_weights_that_do_not_match_the_card_are_a_model_error(tmp_path):
    card = ModelCard(**{**_good_card(), "config": {**_good_card()["config"], "in_channels": 4}})
    card.bands = ["red", "green", "blue", "nir"]
    bad = _card_file(tmp_path / "mismatch.safetensors", card.to_json())
    with pytest.raises(ModelFileError, match="mismatch.safetensors"):
        load_model(str(bad))


def test_the_shipped_card_passes():
    assert read_card(DEFAULT_FILE).scale == 4


# -- real CLI processes: kill -9 then --resume, SIGTERM, two writers ---------------------------
ROWS_LR = 2048  # 96 x 2048 LR with tile 32 / overlap 16: 127 tile rows x 5 = 635 tiles
TOTAL_TILES = 127 * 5
RUN_OPTS = ("--model", "bicubic", "--tile", "32", "--overlap", "16", "--batch-size", "1")
RUN_OPTS += ("--threads", "1", "-q")


@pytest.fixture
def tall(tmp_path):
    data = (texture(3, ROWS_LR, 96, seed=71) * 255).astype(np.uint8)
    return write_raster(tmp_path / "tall.tif", data)


def start_cli(*argv) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "slimdiffsr.cli", "upscale", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def wait_for_records(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the run's journal holds ``n`` fsync'd records of finished rows."""
    journal = out.with_name(protocol.journal_name(out.name))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = Manifest.read(journal)
        if m is not None and len(m.rows_done) and sum(m.rows_done.values()) >= n * 256:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("the run wrote no journal record in time")


def computed_tiles(stdout: str) -> int:
    return int(re.search(r"(\d+) tiles? in", stdout).group(1))


def temp_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.mark.slow
def test_kill_9_then_resume_computes_only_the_missing_tiles_and_gives_identical_bytes(
    tall, tmp_path
):
    ref = tmp_path / "ref.tif"
    p = start_cli(tall, ref, *RUN_OPTS)
    stdout, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert computed_tiles(stdout) == TOTAL_TILES

    out = tmp_path / "out.tif"
    p = start_cli(tall, out, *RUN_OPTS, "--resume")
    wait_for_records(out, 2, p)
    p.kill()  # SIGKILL: no handler, no cleanup, no chance to save anything
    p.wait(30)
    assert not out.exists()
    journal = Manifest.read(out.with_name(protocol.journal_name(out.name)))
    reused = len(journal.tiles)
    assert 0 < reused < TOTAL_TILES

    p = start_cli(tall, out, *RUN_OPTS, "--resume")
    stdout, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "other settings" not in err
    assert computed_tiles(stdout) == TOTAL_TILES - reused  # only the missing tiles
    assert out.read_bytes() == ref.read_bytes()  # the same file, byte for byte
    assert temp_files(out) == []


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c_and_leaves_nothing(tall, tmp_path):
    out = tmp_path / "out.tif"
    p = start_cli(tall, out, *RUN_OPTS)
    wait_for_records(out, 1, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM
    assert_one_line(err, "terminated by SIGTERM", "out.tif was not written")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["tall.tif"]


@pytest.mark.slow
def test_sigterm_with_resume_keeps_the_partial_for_the_next_run(tall, tmp_path):
    out = tmp_path / "out.tif"
    p = start_cli(tall, out, *RUN_OPTS, "--resume")
    wait_for_records(out, 1, p)
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGHUP
    assert_one_line(err, "terminated by SIGHUP", "resume")
    names = temp_files(out)
    assert protocol.journal_name(out.name) in names and not out.exists()
    assert not any(n.endswith(".lock") for n in names)  # the lock goes with the process


@pytest.mark.slow
def test_a_second_run_on_a_locked_output_is_refused_at_once_and_the_first_finishes(tall, tmp_path):
    out = tmp_path / "out.tif"
    first = start_cli(tall, out, *RUN_OPTS)
    wait_for_records(out, 1, first)
    first.send_signal(signal.SIGSTOP)  # hold it mid-run, lock taken, whatever the machine's speed
    try:
        second = start_cli(tall, out, *RUN_OPTS, "--overwrite")
        _, err = second.communicate(timeout=120)  # returns although the first never moves on
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2
    assert_one_line(err, str(out), f"pid {first.pid}", "being written")
    stdout, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert computed_tiles(stdout) == TOTAL_TILES and stdout.startswith(str(out))
    ref = tmp_path / "ref.tif"
    p = start_cli(tall, ref, *RUN_OPTS)
    assert p.wait(600) == 0
    assert out.read_bytes() == ref.read_bytes()  # the first run's file, complete and untouched
    assert temp_files(out) == []


# -- one line per bad file or environment failure ----------------------------------------------
def test_truncated_geotiff_is_one_line_naming_the_file(tmp_path, capsys):
    data = (texture(3, 256, 256, seed=72) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "whole.tif", data, compress="deflate")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])  # header fine, body cut
    code, _, err = run_cli(capsys, "upscale", cut, tmp_path / "o.tif", *RUN_OPTS)
    assert code == 2
    assert_one_line(err, "cut.tif", "truncated or damaged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tif", "whole.tif"]


def test_debug_shows_the_traceback(tmp_path, capsys):
    code, _, err = run_cli(capsys, "upscale", tmp_path / "none.tif", tmp_path / "o.tif", "--debug")
    assert code == 2 and "Traceback" in err and "input not found" in err.splitlines()[-1]


def test_read_only_file_system_is_one_disk_line(small, tmp_path):
    """A real EROFS: the CLI runs in a private mount namespace with a read-only tmpfs."""
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", f"mount -t tmpfs -o ro x {ro}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("cannot mount a read-only file system here (needs unshare and mount rights)")
    cmd = (
        f"mount -t tmpfs -o ro x {ro} && exec {sys.executable} -m slimdiffsr.cli upscale "
        f"{small} {ro}/out.tif --model bicubic -q"
    )
    r = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 2, r.stderr
    assert_one_line(r.stderr, str(ro), "Read-only file system")


def test_output_must_be_a_geotiff_name(small, tmp_path, capsys):
    code, _, err = run_cli(capsys, "upscale", small, tmp_path / "o.png", "--model", "bicubic")
    assert code == 2
    assert_one_line(err, "o.png", ".tif")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("kind", ["text file", "fifo", "link outside"])
def test_overwrite_replaces_only_rasters(kind, small, tmp_path, capsys):
    target = tmp_path / "o.tif"
    outside = tmp_path.parent / f"{tmp_path.name}-outside.tif"
    if kind == "text file":
        target.write_text("not a raster")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        import shutil

        shutil.copy(small, outside)
        target.symlink_to(outside)
    code, _, err = run_cli(
        capsys, "upscale", small, target, "--model", "bicubic", "--overwrite", "-q"
    )
    assert code == 2
    assert_one_line(err, "o.tif", "refusing" if kind != "text file" else "not a raster")
    if kind == "text file":
        assert target.read_text() == "not a raster"
    elif kind == "link outside":
        assert target.is_symlink() and outside.read_bytes() == small.read_bytes()
        outside.unlink()


def test_allocator_failure_is_the_memory_kind():
    err = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 81604378624 bytes. Error code 12 (Cannot allocate memory)"
    )
    assert error_kind(err) == "memory"
    assert error_message(1, err)["kind"] == "memory"
    assert one_line(err).startswith("out of memory")


def test_disk_figures_use_sensible_units():
    assert human_bytes(7.6e6) == "7.6 MB" and human_bytes(512) == "512 bytes"
    assert human_bytes(3.2e9) == "3.2 GB" and human_bytes(150e3) == "150 kB"


# -- data kept: value ranges, NaN/inf, GCPs, no georeferencing ----------------------------------
def _values_case(tmp_path, kind):
    t = texture(3, 48, 48, seed=73)
    if kind == "float32 0-100":
        return write_raster(tmp_path / "f.tif", (t * 100).astype(np.float32))
    return write_raster(tmp_path / "i.tif", (t * 2000 - 1000).astype(np.int16))


@pytest.mark.parametrize(
    "model", ["bicubic", pytest.param("default", marks=pytest.mark.slow)], ids=str
)
@pytest.mark.parametrize("kind", ["float32 0-100", "int16 with negatives"])
def test_float_and_signed_values_are_kept(kind, model, tmp_path):
    src = _values_case(tmp_path, kind)
    r = upscale(src, tmp_path / "o.tif", model=model, tile=32, overlap=16)
    with rasterio.open(src) as a, rasterio.open(r.output) as b:
        lr, sr = a.read().astype(np.float64), b.read().astype(np.float64)
        assert b.dtypes[0] == a.dtypes[0]
    lo, hi = lr.min(), lr.max()
    span = hi - lo
    assert sr.min() < lo + 0.05 * span and sr.max() > hi - 0.05 * span  # not clipped or squashed
    # the SR averaged back to the input grid is the input, up to a few percent of the range
    down = sr.reshape(3, 48, 4, 48, 4).mean(axis=(2, 4))
    assert np.abs(down - lr).mean() < 0.03 * span
    if kind.startswith("int16"):
        assert (sr < -500).mean() > 0.05  # the negatives are still there


def test_nan_and_inf_are_nodata_and_stay_nan(tmp_path):
    data = (texture(3, 48, 48, seed=74) * 100).astype(np.float32)
    data[:, 8:12, 20:24] = np.nan
    data[1, 30, 30] = np.inf  # one band non-finite: the pixel is invalid
    src = write_raster(tmp_path / "n.tif", data)
    r = upscale(src, tmp_path / "o.tif", model="bicubic", tile=32, overlap=16)
    with rasterio.open(r.output) as ds:
        assert np.isnan(ds.nodata)
        sr = ds.read()
    invalid = ~np.isfinite(data).all(axis=0)
    expected = np.repeat(np.repeat(invalid, 4, axis=0), 4, axis=1)
    np.testing.assert_array_equal(np.isnan(sr).all(axis=0), expected)
    assert np.isfinite(sr[:, ~expected]).all()  # no invented values where data was invalid ...
    assert np.isnan(sr[:, expected]).all()  # ... and no finite values either


def test_gcp_only_raster_keeps_its_gcps_scaled_with_a_warning(tmp_path):
    from rasterio.control import GroundControlPoint

    data = (texture(3, 48, 48, seed=75) * 255).astype(np.uint8)
    gcps = [
        GroundControlPoint(row=r, col=c, x=500000 + 10 * c, y=4500000 - 10 * r)
        for r, c in ((0, 0), (0, 48), (48, 0), (48, 48), (20, 30))
    ]
    src = tmp_path / "g.tif"
    with rasterio.open(src, "w", driver="GTiff", width=48, height=48, count=3, dtype="uint8") as d:
        d.write(data)
        d.gcps = (gcps, rasterio.crs.CRS.from_epsg(32618))
    with pytest.warns(UserWarning, match="ground control points"):
        r = upscale(src, tmp_path / "o.tif", model="bicubic", tile=32, overlap=16)
    with rasterio.open(r.output) as ds:
        points, crs = ds.gcps
        assert crs.to_epsg() == 32618 and ds.crs is None
        got = sorted((g.row, g.col, g.x, g.y) for g in points)
        assert got == sorted((4 * g.row, 4 * g.col, g.x, g.y) for g in gcps)


def test_ungeoreferenced_input_gives_ungeoreferenced_output_with_a_warning(tmp_path):
    data = (texture(3, 48, 48, seed=76) * 255).astype(np.uint8)
    src = tmp_path / "photo.png"
    with rasterio.open(src, "w", driver="PNG", width=48, height=48, count=3, dtype="uint8") as d:
        d.write(data)
    with pytest.warns(UserWarning, match="no georeferencing"):
        r = upscale(src, tmp_path / "o.tif", model="bicubic", tile=32, overlap=16)
    with rasterio.open(r.output) as ds:
        assert ds.crs is None and not ds.gcps[0]
        assert ds.transform == Affine.identity()  # GDAL's "none", not a scaled invention
        assert "TIFFTAG_XRESOLUTION" not in ds.tags() and ds.shape == (192, 192)


def test_temporary_names_are_unique_and_recognised_only_for_their_output(tmp_path):
    from slimdiffsr.engine.lock import unique_temp

    out = tmp_path / "out.tif"
    a, b = unique_temp(out, ".partial.tif"), unique_temp(out, ".partial.tif")
    assert a != b and a.parent == b.parent == tmp_path
    assert protocol.is_temp_of("out.tif", a.name) and protocol.is_temp_of("out.tif", b.name)
    other = unique_temp(tmp_path / "out.tif.x.tif", ".partial.tif")  # shares the prefix
    assert not protocol.is_temp_of("out.tif", other.name)
    assert protocol.is_temp_of("out.tif", protocol.lock_name("out.tif"))
    assert protocol.is_temp_of("out.tif", protocol.journal_name("out.tif"))


@pytest.mark.parametrize("resume", [False, True])
def test_interrupt_during_the_final_copy_leaves_no_half_file(resume, small, tmp_path, monkeypatch):
    """Ctrl-C/SIGTERM is delivered right after GDAL's final copy returns: what remains is
    nothing (or, with resume, the partial and its journal), never a half-made final file."""
    import rasterio.shutil

    def copy_then_interrupt(*args, **kwargs):
        real_copy(*args, **kwargs)
        raise KeyboardInterrupt

    real_copy = rasterio.shutil.copy
    monkeypatch.setattr(rasterio.shutil, "copy", copy_then_interrupt)
    out = tmp_path / "o.tif"
    with pytest.raises(KeyboardInterrupt):
        upscale(small, out, model="bicubic", tile=32, overlap=16, resume=resume)
    left = sorted(kind_of(p.name) for p in tmp_path.iterdir() if p != small)
    assert left == (["journal", "partial"] if resume else [])
    monkeypatch.undo()
    journal = Manifest.read(out.with_name(protocol.journal_name(out.name)))
    finished = len(journal.tiles) if resume else 0
    r = upscale(small, out, model="bicubic", tile=32, overlap=16, resume=resume)
    assert r.summary["tiles_reused"] == finished and temp_files(out) == []
    # every row was on disk before the interrupt: a resumed run computes nothing
    assert r.summary["tiles_computed"] == (0 if resume else r.summary["tiles"])


def kind_of(name: str) -> str:
    if name.endswith(".resume.jsonl"):
        return "journal"
    return name.rsplit(".", 2)[-2]
