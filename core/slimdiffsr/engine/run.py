"""Super-resolve a georeferenced raster of any size: ``upscale()`` and the reusable ``Upscaler``.

``Upscaler`` holds a loaded model and the tiling/device settings; ``run()`` processes one raster
(``engine.plan`` decides, ``engine.loop`` runs the tiles, ``engine.writer`` writes). ``upscale()``
is the one-call form with the same parameters, used by the CLI, the QGIS worker and the tests.

Callers report progress and cancel through two callables (the dzetsaka ``FeedbackProtocol``
shape): ``progress(done, total, message)`` after each batch and ``cancel() -> bool`` before it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from slimdiffsr.contract import ValueContract
from slimdiffsr.devices import PRECISIONS, resolve_device
from slimdiffsr.engine import raster_io as rio_io
from slimdiffsr.engine.ensemble import check_ensemble, self_ensemble
from slimdiffsr.engine.loop import GDAL_CACHE_MB, Job, UpscaleResult
from slimdiffsr.engine.plan import (
    QA_THRESHOLD,
    CancelFn,
    ProgressFn,
    RunOptions,
    model_band_count,
    resolve_contract,
    select_bands,
)
from slimdiffsr.engine.preflight import Preflight
from slimdiffsr.engine.preflight import preflight as run_preflight
from slimdiffsr.engine.qa import enforce_lr_consistency
from slimdiffsr.engine.runtime import (
    StaleOnnxError,
    TorchRunner,
    cpu_threads,
    declared_model_bytes,
    enforce_lr_consistency_np,
    installed,
    open_onnx,
    resolve_runtime,
)
from slimdiffsr.engine.tiling import (
    DEFAULT_MARGIN,
    DEFAULT_OVERLAP,
    MAX_TILE,
    check_tiling,
    plan_geometry,
)
from slimdiffsr.engine.writer import fill_invalid
from slimdiffsr.errors import InputError, ModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch

CPU_BUDGET_FRACTION = 0.25  # of the available RAM, for one batch of tiles through the model
CPU_BUDGET_MAX = 4 * 2**30  # beyond this bigger tiles save < 10 % (the halo share) on a CPU
GPU_BUDGET_FRACTION = 0.6  # of the free GPU memory

__all__ = [
    "GDAL_CACHE_MB",
    "CancelFn",
    "Feedback",
    "Preflight",
    "ProgressFn",
    "UpscaleResult",
    "Upscaler",
    "fill_invalid",
    "load_engine_model",
    "resolve_contract",
    "resolve_device",
    "select_bands",
    "upscale",
]


class Feedback(Protocol):
    """What a caller may pass as ``feedback=``: the two callbacks on one object."""

    def progress(self, done: int, total: int, message: str) -> None: ...

    def cancel(self) -> bool: ...


# -- models ------------------------------------------------------------------------------------
def load_engine_model(
    model: str | Path | torch.nn.Module,
    scale: int | None,
    device: torch.device,
    detail: float | None = None,
) -> torch.nn.Module:
    """A model by name/path (through the registry) or an already built module, on ``device``."""
    import torch

    if isinstance(model, torch.nn.Module):
        for attr in ("scale", "halo"):
            if not isinstance(getattr(model, attr, None), int):
                raise ModelError(f"model object lacks an integer .{attr} (see ARCHITECTURE.md)")
        if scale is not None and scale != model.scale:
            raise ModelError(f"the model is x{model.scale}, but scale {scale} was requested")
        return model.to(device).eval()
    from slimdiffsr.models.registry import load_model

    return load_model(str(model), device=device, scale=scale, detail=detail)


# -- the engine --------------------------------------------------------------------------------
class Upscaler:
    """A loaded model plus tiling and device settings, reusable over many rasters.

    ``model`` is an installed name (``default``, ``bicubic``), a ``.safetensors`` or ``.onnx``
    path, or a torch module following the model contract (docs/ARCHITECTURE.md). ``runtime``:
    ``torch`` (eager), ``onnx`` (ONNX Runtime on the model's ``.onnx`` twin) or ``auto`` (ONNX
    Runtime where installed, see ``engine.runtime``). ``halo`` defaults to the model's and can
    only be raised. On CUDA, cuDNN is switched to deterministic algorithms.

    ``tile``/``overlap`` None (the default) size tiles per raster from a memory budget
    (:meth:`geometry`): the largest tile whose batch fits ``tile_memory_mb`` (default: a share
    of the available RAM or free GPU memory) at the model's declared bytes per pixel, and the
    overlap blending needs; a raster that fits is one tile. ``batch_size`` None: 1 on a CPU
    (large tiles), 4 on a GPU.
    """

    def __init__(
        self,
        model: str | Path | torch.nn.Module = "default",
        *,
        scale: int | None = None,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        runtime: str = "auto",
        tile: int | None = None,
        overlap: int | None = None,
        halo: int | None = None,
        margin: int = DEFAULT_MARGIN,
        batch_size: int | None = None,
        consistency: bool = False,
        consistency_iterations: int = 3,
        memory_mb: int = 256,
        tile_memory_mb: int | None = None,
        threads: int | None = None,
        detail: float | None = None,
        ensemble: int = 1,
    ) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        try:
            self.ensemble = check_ensemble(ensemble)
        except ValueError as e:
            raise InputError(str(e)) from None
        # detail (0-1) blends the fidelity and perceptual models' weights: a torch-only operation
        self.runtime = "torch" if detail else resolve_runtime(runtime, model, str(device))
        if self.runtime == "torch":
            import torch

            self.device = resolve_device(device)
            if precision != "fp32" and self.device.type == "cpu":
                warnings.warn(
                    f"{precision} runs only on a GPU; using fp32 on the CPU",
                    UserWarning,
                    stacklevel=2,
                )
                precision = "fp32"
            if self.device.type == "cuda":
                torch.backends.cudnn.deterministic = True
                torch.backends.cudnn.benchmark = False
            self.model = load_engine_model(model, scale, self.device, detail)
            self.runner: Any = TorchRunner(self.model, self.device, precision)
            declared = declared_model_bytes(model, precision)  # the same tiles as with ONNX
            if declared:
                self.runner.bytes_per_pixel = declared
        else:
            try:
                self.runner = open_onnx(
                    str(model),
                    scale=scale,
                    device=str(device),
                    precision=precision,
                    threads=threads,
                )
            except StaleOnnxError as e:
                if str(runtime).lower() != "auto" or not installed("torch"):
                    raise
                warnings.warn(f"{e}; running the torch model", UserWarning, stacklevel=2)
                self.__init__(  # type: ignore[misc]
                    model, scale=scale, device=device, precision=precision, runtime="torch",
                    tile=tile, overlap=overlap, halo=halo, margin=margin, batch_size=batch_size,
                    consistency=consistency, consistency_iterations=consistency_iterations,
                    memory_mb=memory_mb, tile_memory_mb=tile_memory_mb, threads=threads,
                    detail=detail, ensemble=ensemble,
                )  # fmt: skip
                return
            self.model = self.runner
            self.device = self.runner.device
            precision = self.runner.precision
        self.precision = precision
        self.device_kind = str(self.device).split(":")[0]
        self.scale = int(self.runner.scale)
        self.halo = max(int(self.runner.halo), int(halo or 0))
        self.margin = int(margin)
        self.tile = int(tile) if tile else None
        self.overlap = int(overlap) if overlap else None  # 0 is never valid: automatic
        if self.tile is not None:
            self.overlap = DEFAULT_OVERLAP if self.overlap is None else self.overlap
            check_tiling(self.tile, self.overlap, self.scale, self.margin)
        self.batch_size = int(batch_size or (1 if self.device_kind == "cpu" else 4))
        self.consistency = bool(consistency)
        self.consistency_iterations = int(consistency_iterations)
        self.memory_mb = int(memory_mb)
        self.tile_memory_mb = tile_memory_mb
        self.threads = threads or cpu_threads()
        card = getattr(self.model, "card", None)
        self.card = card
        self.model_name = card.name if card is not None else type(self.model).__name__
        self.model_hash = str(getattr(self.runner, "model_hash", "unknown"))
        self.in_bands = model_band_count(self.model)

    # -- tile geometry -------------------------------------------------------------------------
    def tile_budget_bytes(self) -> float:
        """Memory for one batch through the model: ``tile_memory_mb``, else a share of the
        available RAM (CPU) or of the free GPU memory."""
        if self.tile_memory_mb:
            return float(self.tile_memory_mb) * 2**20
        if self.device_kind == "cuda":
            free = None
            if self.runtime == "torch":
                import torch

                free, _ = torch.cuda.mem_get_info(self.device)
            return GPU_BUDGET_FRACTION * float(free or 8 * 2**30)
        budget = min(CPU_BUDGET_MAX, max(2**28, CPU_BUDGET_FRACTION * _available_ram()))
        # a power of two: the tiles (and so the output) do not change with every MB of free RAM
        return float(2 ** math.floor(math.log2(budget)))

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        """(tile, overlap) for a ``height`` x ``width`` LR region (see the class docstring)."""
        if self.tile is not None:
            return self.tile, int(self.overlap if self.overlap is not None else DEFAULT_OVERLAP)
        g = plan_geometry(
            height,
            width,
            scale=self.scale,
            halo=self.halo,
            bytes_per_pixel=float(self.runner.bytes_per_pixel),
            budget_bytes=self.tile_budget_bytes(),
            batch_size=self.batch_size,
            margin=self.margin,
            max_tile=int(getattr(self.runner, "max_tile", MAX_TILE)),
        )
        overlap = g.overlap if self.overlap is None else self.overlap
        if overlap >= g.tile:  # one tile: the overlap is unused
            overlap = g.overlap
        return g.tile, overlap

    # -- the model step (also what the benchmark times bare) -------------------------------------
    def forward(self, lr: Any) -> Any:
        """LR batch in [-1, 1] (B, C, h, w) -> SR float32 (B, C, s*h, s*w): a torch tensor on the
        device for the torch runtime, a numpy array for ONNX Runtime. With ``ensemble`` > 1, the
        mean over that many flipped/rotated copies (``engine.ensemble``)."""
        if self.runtime == "torch":
            return self_ensemble(self.runner.forward_tensor, lr, self.ensemble)
        return self_ensemble(self.runner, np.asarray(lr, dtype=np.float32), self.ensemble)

    def predict(
        self, x: np.ndarray, halo: int | tuple[int, int, int, int], size: tuple[int, int]
    ) -> np.ndarray:
        """LR tiles with context in model units (B, C, h, w) -> their HR cores, float32 numpy.

        The model step as the tile loop sees it: forward, LR consistency if enabled, then the
        context cropped off (``halo``: pixels on every side, or (top, bottom, left, right)), so
        ``size`` (th, tw) LR pixels come back as (s*th, s*tw).
        """
        s = self.scale
        top, _, left, _ = (halo,) * 4 if isinstance(halo, int) else halo
        th, tw = size
        sr = self.forward(x)
        if tuple(sr.shape[-2:]) != (x.shape[-2] * s, x.shape[-1] * s) or sr.shape[1] != x.shape[1]:
            raise ModelError(
                f"model returned {tuple(sr.shape)} for input {tuple(x.shape)} at scale x{s}"
            )
        rows = slice(top * s, (top + th) * s)
        cols = slice(left * s, (left + tw) * s)
        if self.runtime != "torch":
            if self.consistency:
                sr = enforce_lr_consistency_np(sr, x, s, self.consistency_iterations)
            return np.ascontiguousarray(sr[:, :, rows, cols], dtype=np.float32)
        import torch

        with torch.inference_mode():
            if self.consistency:
                lr = torch.from_numpy(np.ascontiguousarray(x)).to(sr.device)
                sr = enforce_lr_consistency(sr, lr, s, self.consistency_iterations)
            return sr[:, :, rows, cols].float().cpu().numpy()

    def run(
        self,
        input: str | Path,
        output: str | Path,
        *,
        bands: Sequence[int] | None = None,
        roi_window: tuple[int, int, int, int] | None = None,
        roi_bounds: tuple[float, float, float, float] | None = None,
        roi_crs: Any = None,
        value_contract: str | dict[str, Any] | ValueContract | None = None,
        out_dtype: str | None = None,
        qa: bool = False,
        qa_threshold: float = QA_THRESHOLD,
        cog: bool = False,
        overwrite: bool = False,
        resume: bool = False,
        compress: str = "deflate",
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        feedback: Feedback | None = None,
        on_preflight: Callable[[Preflight], None] | None = None,
    ) -> UpscaleResult:
        """Super-resolve ``input`` into the GeoTIFF ``output``; see :func:`upscale`."""
        if feedback is not None:
            progress = progress or feedback.progress
            cancel = cancel or feedback.cancel
        options = RunOptions(
            bands=tuple(bands) if bands else None,
            roi_window=roi_window,
            roi_bounds=roi_bounds,
            roi_crs=roi_crs,
            value_contract=value_contract,
            out_dtype=out_dtype,
            qa=qa,
            qa_threshold=qa_threshold,
            cog=cog,
            overwrite=overwrite,
            resume=resume,
            compress=compress,
            progress=progress,
            cancel=cancel,
            on_preflight=on_preflight,
        )
        job = Job(self, Path(input), Path(output), options)
        return job.execute()

    def preflight(
        self,
        input: str | Path,
        output: str | Path | None = None,
        *,
        bands: Sequence[int] | None = None,
        roi_window: tuple[int, int, int, int] | None = None,
        roi_bounds: tuple[float, float, float, float] | None = None,
        roi_crs: Any = None,
        value_contract: str | dict[str, Any] | ValueContract | None = None,
        out_dtype: str | None = None,
        **_: Any,
    ) -> Preflight:
        """Plan ``input`` without running it: the value mapping's sentence, bands, warnings.

        Takes the parameters of :meth:`run` (those that do not affect the plan are ignored);
        refusals raise the same errors a run would.
        """
        options = RunOptions(
            bands=tuple(bands) if bands else None,
            roi_window=roi_window,
            roi_bounds=roi_bounds,
            roi_crs=roi_crs,
            value_contract=value_contract,
            out_dtype=out_dtype,
        )
        inp = Path(input)
        with rio_io.open_input(inp) as src:
            return run_preflight(src, inp, Path(output) if output else None, self, options)


def upscale(
    input: str | Path,
    output: str | Path,
    model: str | Path | torch.nn.Module = "default",
    *,
    scale: int | None = None,
    bands: Sequence[int] | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    runtime: str = "auto",
    threads: int | None = None,
    tile_memory_mb: int | None = None,
    roi_window: tuple[int, int, int, int] | None = None,
    roi_bounds: tuple[float, float, float, float] | None = None,
    roi_crs: Any = None,
    value_contract: str | dict[str, Any] | ValueContract | None = None,
    out_dtype: str | None = None,
    qa: bool = False,
    consistency: bool = False,
    detail: float | None = None,
    ensemble: int = 1,
    cog: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    compress: str = "deflate",
    memory_mb: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    feedback: Feedback | None = None,
    on_preflight: Callable[[Preflight], None] | None = None,
) -> UpscaleResult:
    """Super-resolve a raster into a GeoTIFF aligned with it; returns an :class:`UpscaleResult`.

    - ``input``: a raster, or a Sentinel-2 ``.SAFE`` folder/zip or Landsat C2 L2 folder/MTL file.
    - ``bands``: 1-based input bands to keep, in output order; the first ones (as many as the
      model takes) are super-resolved, the rest upsampled bicubically. Default: every band but
      alpha in input order, the model card's bands (matched by colour interpretation, else the
      first non-alpha bands) super-resolved and the others (near-infrared, SWIR, ...) bicubic.
    - ``roi_window`` ``(col_off, row_off, width, height)`` in pixels, or ``roi_bounds``
      ``(xmin, ymin, xmax, ymax)`` in the raster's CRS (or ``roi_crs``).
    - ``value_contract``: None or ``auto`` picks the mapping onto the model card's domain from an
      overview (uint8 as is, reflectance x 10,000 or floats in 0..~1.5 as reflectance, other
      ranges by a raster-wide percentile stretch); or ``fixed:0:10000``, ``percentile:2:98``, a
      dict or a ValueContract. Nothing is clipped either way (see ``engine.loop``).
    - ``on_preflight(preflight)`` is called once before the first tile with the plan and its
      one-sentence description (``preflight.describe()``).
    - ``out_dtype``: None keeps the input dtype; ``float32`` writes unrounded values.
    - ``qa``: also write ``<out>_qa.tif`` (|down(SR) - LR| per band on the input grid) and
      ``<out>_qa.json``. ``consistency`` enforces down(SR) ~ LR per tile.
    ``detail`` (0-1, default model only) blends the fidelity default (0) and the perceptual model
    (1) by weight interpolation (``models.registry.load_model``). ``ensemble`` (1, 2, 4 or 8)
    averages the model over that many flipped/rotated copies of each tile: as many times slower,
    a little more faithful (``engine.ensemble``).
    - ``resume``: keep the partial file and manifest if interrupted, and continue from them.
    - ``runtime``: ``auto`` (ONNX Runtime where installed), ``onnx`` or ``torch``; ``threads``
      CPU threads for ONNX Runtime (default: the cores available).
    - ``tile``/``overlap`` None: sized per raster from ``tile_memory_mb`` (default: a share of
      the device's memory); small rasters run as one tile.
    - ``progress(done, total, message)`` is called after each batch, ``cancel()`` before it.
    """
    up = Upscaler(
        model,
        scale=scale,
        device=device,
        precision=precision,
        runtime=runtime,
        tile=tile,
        overlap=overlap,
        halo=halo,
        batch_size=batch_size,
        consistency=consistency,
        memory_mb=memory_mb,
        tile_memory_mb=tile_memory_mb,
        threads=threads,
        detail=detail,
        ensemble=ensemble,
    )
    return up.run(
        input,
        output,
        bands=bands,
        roi_window=roi_window,
        roi_bounds=roi_bounds,
        roi_crs=roi_crs,
        value_contract=value_contract,
        out_dtype=out_dtype,
        qa=qa,
        cog=cog,
        overwrite=overwrite,
        resume=resume,
        compress=compress,
        progress=progress,
        cancel=cancel,
        feedback=feedback,
        on_preflight=on_preflight,
    )


def _available_ram() -> float:
    """Bytes of RAM available now (Linux ``MemAvailable``), else half the physical RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2
    except (ValueError, OSError, AttributeError):
        return 4.0 * 2**30
