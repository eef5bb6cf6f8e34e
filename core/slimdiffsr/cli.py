"""The ``slimdiffsr`` command: super-resolve GeoTIFFs, list models, convert and evaluate them.

One function per command; each docstring is its ``--help``. Deliberate errors (a missing file, a
band the raster lacks, an existing output) print one line and exit with status 2, never a
traceback. ``convert`` and ``evaluate`` belong to other modules and are imported only when used.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import inspect
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slimdiffsr import __version__, protocol
from slimdiffsr.errors import SlimDiffSRError, error_kind, one_line

PROG = "slimdiffsr"
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
DELEGATED = {
    "convert": ("slimdiffsr.models.convert", "import a published checkpoint as a model file"),
    "evaluate": ("slimdiffsr.evaluate", "score models on the evaluation sets"),
}


class CLIError(SlimDiffSRError):
    """A command-line usage problem found after parsing (e.g. several inputs, one output file)."""

    kind = "input"


# -- argument types ----------------------------------------------------------------------------
def _numbers(text: str, n: int | None, cast: type, what: str) -> list[Any]:
    try:
        vals = [cast(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected numbers separated by commas") from None
    if n is not None and len(vals) != n:
        raise argparse.ArgumentTypeError(f"{what}: expected {n} comma-separated values")
    if not vals:
        raise argparse.ArgumentTypeError(f"{what}: expected at least one value")
    return vals


def band_list(text: str) -> list[int]:
    vals = _numbers(text, None, int, "--bands")
    if min(vals) < 1:
        raise argparse.ArgumentTypeError("--bands: band numbers start at 1")
    return vals


def bounds(text: str) -> tuple[float, float, float, float]:
    return tuple(_numbers(text, 4, float, "--roi"))  # type: ignore[return-value]


def pixel_window(text: str) -> tuple[int, int, int, int]:
    return tuple(_numbers(text, 4, int, "--roi-window"))  # type: ignore[return-value]


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Super-resolution of georeferenced rasters with a one-step diffusion student.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an error (any position)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = sub.add_parser(
        "upscale",
        help="super-resolve a GeoTIFF (or a folder / glob of them)",
        description=inspect.cleandoc(cmd_upscale.__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("input", help="raster file, folder, or quoted glob pattern ('scenes/*.tif')")
    up.add_argument("output", help="output GeoTIFF, or a folder when there are several inputs")
    g = up.add_argument_group("model")
    g.add_argument(
        "-m",
        "--model",
        default=protocol.UPSCALE_PARAMS["model"],
        help="installed name or .safetensors path (default: %(default)s; 'bicubic' for the baseline)",
    )
    g.add_argument(
        "--scale",
        type=int,
        choices=protocol.SCALES,
        help="upscaling factor; must match the model (bicubic: any)",
    )
    g.add_argument(
        "--detail",
        type=float,
        default=None,
        metavar="0-1",
        help="fidelity <-> detail: 0 = the fidelity default, 1 = the perceptual model, between = "
        "their weights blended (default model only)",
    )
    g.add_argument(
        "--ensemble",
        type=int,
        choices=protocol.ENSEMBLES,
        default=1,
        metavar="N",
        help="self-ensemble: average the model over N flipped/rotated copies of each tile "
        "(1, 2, 4 or 8; N times slower, a little more faithful; default 1)",
    )
    g.add_argument(
        "--bands",
        type=band_list,
        metavar="B,B,B",
        help="1-based input bands to keep, in output order; the first ones go to the model, e.g. 4,3,2 for Sentinel-2 true colour (default: every band; the model card's bands super-resolved, the others such as near-infrared upsampled bicubically)",
    )
    g.add_argument(
        "--value-contract",
        metavar="SPEC",
        help="input values -> model range: auto (default: chosen from the data and the model card, and printed before the run), fixed:LOW:HIGH (e.g. fixed:0:10000 for reflectance) or percentile:PLOW:PHIGH (computed once per raster); nothing is clipped",
    )
    g = up.add_argument_group("region")
    g.add_argument(
        "--roi",
        type=bounds,
        metavar="XMIN,YMIN,XMAX,YMAX",
        help="map bounds to process (raster CRS unless --roi-crs)",
    )
    g.add_argument("--roi-crs", metavar="CRS", help="CRS of --roi, e.g. EPSG:4326")
    g.add_argument(
        "--roi-window",
        type=pixel_window,
        metavar="COL,ROW,WIDTH,HEIGHT",
        help="pixel window to process",
    )
    g = up.add_argument_group("tiling and device")
    g.add_argument(
        "--tile",
        type=int,
        help="tile size in input pixels; tile x scale must be a multiple of 16 (default: the largest that fits the device's memory; a small raster is one tile)",
    )
    g.add_argument(
        "--overlap",
        type=int,
        help="overlap of neighbouring tiles in input pixels (default: 16 with automatic tiles, 32 with --tile)",
    )
    g.add_argument(
        "--halo", type=int, help="extra context around each tile (default and minimum: the model's)"
    )
    g.add_argument(
        "--batch-size", type=int, help="tiles per model call (default: 1 on a CPU, 4 on a GPU)"
    )
    g.add_argument(
        "--runtime",
        default="auto",
        choices=protocol.RUNTIMES,
        help="onnx: ONNX Runtime (faster on CPUs; the light backend has only this); torch: eager "
        "PyTorch; auto: ONNX Runtime where installed and the model has an .onnx twin (default)",
    )
    g.add_argument(
        "--device",
        default=protocol.UPSCALE_PARAMS["device"],
        choices=protocol.DEVICES,
        help="default: CUDA, then Apple MPS, then CPU",
    )
    g.add_argument(
        "--precision",
        default=protocol.UPSCALE_PARAMS["precision"],
        choices=protocol.PRECISIONS,
        help="fp16/bf16 autocast on GPUs (default: %(default)s)",
    )
    g.add_argument("--threads", type=int, help="CPU threads (default: the cores available)")
    g.add_argument(
        "--memory-mb",
        type=int,
        default=256,
        help="RAM for the blending buffer; wider rasters are done in column chunks (default: %(default)s)",
    )
    g = up.add_argument_group("output")
    g.add_argument(
        "--dtype",
        default="same",
        choices=("same", "float32"),
        help="output data type (default: same as input)",
    )
    g.add_argument(
        "--compress",
        default="deflate",
        choices=protocol.COMPRESSIONS,
        help="GeoTIFF compression (default: %(default)s)",
    )
    g.add_argument(
        "--cog", action="store_true", help="write a Cloud Optimized GeoTIFF with overviews"
    )
    g.add_argument(
        "--qa",
        action="store_true",
        help="also write OUT_qa.tif (|down(SR) - LR| per band) and OUT_qa.json",
    )
    g.add_argument(
        "--consistency",
        action="store_true",
        help="enforce down(SR) = LR (replace the SR's low frequencies with the input's)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run; keep its partial file if interrupted again",
    )
    g.add_argument("--overwrite", action="store_true", help="replace an existing output")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g = up.add_argument_group("cluster (docs/cluster.md)")
    g.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run on Dask: a scheduler address (tcp://host:8786) or local:N (N worker processes); OUTPUT is a folder, a STAC collection.json is written there",
    )
    g.add_argument(
        "--split-pixels",
        type=int,
        default=16_000_000,
        help="with --cluster: rasters over this many input pixels are split into row bands over the workers (default: %(default)s)",
    )
    g.add_argument(
        "--retries", type=int, default=2, help="with --cluster: retries of a failed task"
    )
    g.add_argument("--no-stac", action="store_true", help="with --cluster: no STAC catalogue")
    up.set_defaults(func=cmd_upscale)

    models = sub.add_parser("models", help="installed models", description="Installed models.")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ml = msub.add_parser(
        "list",
        help="list installed models",
        description=inspect.cleandoc(cmd_models_list.__doc__ or ""),
    )
    ml.set_defaults(func=cmd_models_list)

    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)  # parsed by the delegate (see main)
    return parser


# -- commands ----------------------------------------------------------------------------------
def resolve_inputs(spec: str) -> list[Path]:
    """A file, a satellite product, the rasters in a folder, or a glob pattern's matches."""
    from slimdiffsr.engine.products import detect

    p = Path(spec)
    if p.is_dir() and detect(p) is not None:
        return [p]
    if p.is_dir():
        files = sorted(
            f for f in p.iterdir() if f.suffix.lower() in RASTER_SUFFIXES and f.is_file()
        )
        if not files:
            raise CLIError(f"no rasters ({', '.join(RASTER_SUFFIXES)}) in folder {p}")
        return files
    if any(ch in spec for ch in "*?[") and not p.exists():
        files = sorted(Path(f) for f in glob.glob(spec) if Path(f).is_file())
        if not files:
            raise CLIError(f"no files match {spec!r}")
        return files
    return [p]


def output_for(inp: Path, output: Path, scale: int | None, several: bool) -> Path:
    """Several inputs (or an existing folder): ``OUTPUT/<stem>_x<scale>.tif``."""
    if several or output.is_dir():
        return output / f"{inp.stem}_x{scale or 'sr'}.tif"
    return output


class _Progress:
    """tqdm bar: tiles, tiles/s and ETA (hidden with --quiet or when stderr is not a terminal)."""

    def __init__(self, desc: str, quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, unit="tile", disable=True if quiet else None, leave=False)

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.bar.total != total:
            self.bar.reset(total=total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def cmd_upscale(args: argparse.Namespace) -> int:
    """Super-resolve rasters into GeoTIFFs that line up with them on the map.

    The output has the input's CRS, the transform scaled by 1/scale, the same dtype, nodata, band
    names and colours, and is written to a temporary file that is renamed at the end. Nodata
    pixels stay nodata; tiles are blended without seams; memory does not grow with the raster.

    examples:
      slimdiffsr upscale scene.tif scene_x4.tif
      slimdiffsr upscale S2B_MSIL2A_20240101T...SAFE s2_x4.tif
      slimdiffsr upscale S2_L2A.tif sr.tif --bands 4,3,2 --value-contract fixed:0:10000 --qa
      slimdiffsr upscale ortho.tif roi.tif --roi 485900,5205000,487000,5206000 --model bicubic
      slimdiffsr upscale 'tiles/*.tif' out_folder/ --device cuda --precision fp16 --cog
    """
    from slimdiffsr.engine.run import Upscaler
    from slimdiffsr.engine.runtime import installed

    if args.threads and installed("torch"):
        import torch

        torch.set_num_threads(args.threads)
    inputs = resolve_inputs(args.input)
    if getattr(args, "cluster", None):
        from slimdiffsr.cluster.submit import run_cli

        return run_cli(args, inputs, Path(args.output))
    several = len(inputs) > 1
    output = Path(args.output)
    if several:
        if output.exists() and not output.is_dir():
            raise CLIError(f"{len(inputs)} inputs need an output folder, but {output} is a file")
        output.mkdir(parents=True, exist_ok=True)
    up = Upscaler(
        args.model,
        scale=args.scale,
        device=args.device,
        precision=args.precision,
        runtime=args.runtime,
        threads=args.threads,
        tile=args.tile,
        overlap=args.overlap,
        halo=args.halo,
        batch_size=args.batch_size,
        consistency=args.consistency,
        memory_mb=args.memory_mb,
        detail=args.detail,
        ensemble=args.ensemble,
    )
    failed = 0
    for inp in inputs:
        out = output_for(inp, output, up.scale, several)
        bar = _Progress(inp.name, args.quiet)
        try:
            result = up.run(
                inp,
                out,
                bands=args.bands,
                roi_window=args.roi_window,
                roi_bounds=args.roi,
                roi_crs=args.roi_crs,
                value_contract=args.value_contract,
                out_dtype=None if args.dtype == "same" else args.dtype,
                qa=args.qa,
                cog=args.cog,
                overwrite=args.overwrite,
                resume=args.resume,
                compress=args.compress,
                progress=bar,
                on_preflight=lambda pf, name=inp.name: print(
                    f"{PROG}: {name}: {pf.describe()}", file=sys.stderr, flush=True
                ),
            )
        except SlimDiffSRError as e:
            if not several:
                raise
            failed += 1
            _error(f"{inp}: {e}")
            continue
        except KeyboardInterrupt as e:  # main() prints one line with this note
            e.note = (  # type: ignore[attr-defined]
                f"run the same command again to resume {out}"
                if args.resume
                else f"{out} was not written; its temporary files were removed"
            )
            raise
        finally:
            bar.close()
        print(result.output)
        print(f"  {result.summary_line()}")
        if result.qa_output:
            print(f"  QA: {result.qa_output} and {result.qa_json}")
    return 2 if failed else 0


def cmd_models_list(args: argparse.Namespace) -> int:
    """List installed models: name, scale, bands and value contract ('*' marks the default)."""
    from slimdiffsr.models.registry import list_models

    rows = [("", "NAME", "SCALE", "BANDS", "VALUE CONTRACT", "LICENSE")]
    for e in list_models():
        d = e.as_dict()
        vc = d["value_contract"] or {}
        contract = (
            f"{vc.get('kind', 'fixed')} {vc.get('low')}..{vc.get('high')}" if vc else "from dtype"
        )
        bands = ",".join(d["bands"]) or "any"
        rows.append(
            (
                "*" if d["default"] else "",
                d["name"],
                f"x{d['scale']}",
                bands,
                contract,
                d["license"],
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    return 0


def _delegate(command: str, argv: list[str]) -> int:
    module_name = DELEGATED[command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise CLIError(f"'{PROG} {command}' is not available in this installation") from e
        raise
    return int(module.main(argv) or 0)


# -- entry point -------------------------------------------------------------------------------
def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"{PROG}: warning: {message}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwound like Ctrl-C, so the run cleans up (or keeps its partial
    for ``--resume``) before the process exits with ``128 + signal``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: Any) -> None:
    for s in _CAUGHT:  # once: a second signal must not interrupt the cleanup
        signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


_CAUGHT = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Exit status: 0 done; 1 a bug (one line; ``--debug`` prints the traceback); 2 an error the user
    can fix (bad input, model, device, memory, disk, output in use); 130 Ctrl-C; 143 SIGTERM;
    129 SIGHUP. Interrupted runs remove their temporary files, or keep them for ``--resume``.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    args_list = [a for a in args_list if a != "--debug"]
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning
    old_handlers = {}
    if threading.current_thread() is threading.main_thread():
        old_handlers = {s: signal.signal(s, _on_signal) for s in _CAUGHT}
    try:
        if args_list and args_list[0] in DELEGATED:
            return _delegate(args_list[0], args_list[1:])
        args = build_parser().parse_args(args_list)
        return int(args.func(args) or 0)
    except SlimDiffSRError as e:
        _traceback(debug)
        _error(one_line(e))
        return 2
    except Terminated as e:
        _traceback(debug)
        _error(f"terminated by {signal.Signals(e.signum).name}{_note(e)}")
        return 128 + e.signum
    except KeyboardInterrupt as e:
        _traceback(debug)
        _error(f"interrupted{_note(e)}")
        return 130
    except Exception as e:  # noqa: BLE001 - one line, never a traceback unless --debug
        _traceback(debug)
        if error_kind(e) is not None:  # memory, disk, missing file: the user can act on it
            _error(one_line(e))
            return 2
        _error(f"internal error: {type(e).__name__}: {one_line(e)} (--debug shows the traceback)")
        return 1
    finally:
        warnings.showwarning = old_show
        for s, h in old_handlers.items():
            signal.signal(s, h)


def _note(e: BaseException) -> str:
    note = getattr(e, "note", None)
    return f"; {note}" if note else ""


def _traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
