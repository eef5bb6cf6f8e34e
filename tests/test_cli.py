"""The ``slimdiffsr`` command, run for real on small GeoTIFFs (in-process and as a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from engine_util import texture, write_raster

from slimdiffsr.cli import main

DEMO = (
    Path(__file__).resolve().parents[1] / "core" / "slimdiffsr" / "demo" / "neon_teak_043_crop.tif"
)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_upscale_demo_prints_path_and_summary(capsys, tmp_path):
    out = tmp_path / "teak_x4.tif"
    code, stdout, stderr = run(
        capsys, "upscale", str(DEMO), str(out), "--model", "bicubic", "--qa", "-q"
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == str(out)
    assert "128x128 -> 512x512 px" in lines[1] and "EPSG:32611" in lines[1]
    assert "mean |down(SR)-LR|" in lines[1] and " s (" in lines[1]
    assert "QA:" in lines[2] and (tmp_path / "teak_x4_qa.json").exists()
    with rasterio.open(DEMO) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.bounds == src.bounds and dst.count == 3


def test_errors_are_one_line_with_exit_code_2(capsys, tmp_path):
    out = tmp_path / "o.tif"
    out.write_bytes(b"x")
    code, _, err = run(capsys, "upscale", str(DEMO), str(out), "--model", "bicubic", "-q")
    assert code == 2
    assert (
        err.strip().count("\n") == 0
        and err.startswith("slimdiffsr: error:")
        and "--overwrite" in err
    )
    assert "Traceback" not in err
    for argv, needle in [
        (
            ["upscale", str(tmp_path / "missing.tif"), str(tmp_path / "m.tif"), "-m", "bicubic"],
            "not found",
        ),
        (
            ["upscale", str(DEMO), str(tmp_path / "b.tif"), "-m", "bicubic", "--bands", "1,2,7"],
            "band",
        ),
        (
            ["upscale", str(DEMO), str(tmp_path / "t.tif"), "-m", "bicubic", "--tile", "30"],
            "multiple of 16",
        ),
        (
            ["upscale", str(DEMO), str(tmp_path / "d.tif"), "-m", "no-such-model"],
            "no installed model",
        ),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and needle in err and "Traceback" not in err, err
    with pytest.raises(SystemExit) as e:  # argparse's own usage errors are exit 2 as well
        main(["upscale", str(DEMO), "x.tif", "--roi", "1,2,3"])
    assert e.value.code == 2


def test_folder_and_glob_inputs(capsys, tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i in range(2):
        write_raster(folder / f"s{i}.tif", (texture(3, 24, 24, seed=60 + i) * 255).astype(np.uint8))
    (folder / "notes.txt").write_text("not a raster")
    code, stdout, err = run(
        capsys,
        "upscale",
        str(folder),
        str(tmp_path / "out"),
        "-m",
        "bicubic",
        "--tile",
        "32",
        "--overlap",
        "16",
        "-q",
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0_x4.tif", "s1_x4.tif"]
    code, stdout, err = run(
        capsys,
        "upscale",
        str(folder / "s*.tif"),
        str(tmp_path / "out2"),
        "-m",
        "bicubic",
        "--tile",
        "32",
        "--overlap",
        "16",
        "-q",
    )
    assert code == 0, err
    assert stdout.count(".tif\n") == 2 and len(list((tmp_path / "out2").iterdir())) == 2


def test_roi_and_warning_line(capsys, tmp_path):
    data = (texture(1, 32, 32, seed=62) * 255).astype(np.uint8)
    src = write_raster(
        tmp_path / "geo.tif", data, crs="EPSG:4326", transform=Affine(0.001, 0, 10, 0, -0.001, 50)
    )
    code, stdout, err = run(
        capsys,
        "upscale",
        str(src),
        str(tmp_path / "o.tif"),
        "-m",
        "bicubic",
        "--tile",
        "32",
        "--overlap",
        "16",
        "--roi-window",
        "0,0,16,16",
        "-q",
    )
    assert code == 0 and "16x16 -> 64x64" in stdout
    assert err.startswith("slimdiffsr: warning:") and "geographic" in err


def test_models_list_and_help(capsys):
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "bicubic-x4" in out and "SCALE" in out
    with pytest.raises(SystemExit) as e:
        main(["upscale", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--value-contract" in text and "--resume" in text


@pytest.mark.parametrize("command", ["convert", "evaluate"])
def test_delegated_commands_parse_their_own_arguments(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert f"slimdiffsr {command}" in capsys.readouterr().out


def test_console_entry_point_runs(tmp_path):
    out = tmp_path / "sub.tif"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slimdiffsr.cli",
            "upscale",
            str(DEMO),
            str(out),
            "-m",
            "bicubic",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == str(out) and out.exists()
