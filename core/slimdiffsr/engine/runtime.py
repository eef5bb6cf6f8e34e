"""Model runners: the network step of the engine in torch eager or in ONNX Runtime.

A runner maps a batch of LR tiles in model units, numpy float32 (B, C, h, w), to SR float32
(B, C, s*h, s*w). It carries what the engine needs from a model (``scale``, ``halo``, ``card``,
``model_hash``, ``in_channels``, memory per output pixel) without the engine knowing which
library computes it. ONNX Runtime runs the ``.onnx`` twin shipped beside a model's
``.safetensors`` file (see ``models.onnx_export``) on the CPU, CUDA or TensorRT execution
provider, fp16 on a GPU; the bicubic baseline has a numpy runner. This module imports neither
torch nor onnxruntime at import time: the light backend (``.venv-onnx``) has no torch at all.

``runtime="auto"`` picks ONNX Runtime where it is installed and the model has an ONNX twin
(1.8-2.3x faster than torch eager on CPUs, outputs equal within 1e-6), torch otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from slimdiffsr.errors import DeviceError, InputError, ModelError, OutOfMemoryError

RUNTIMES = ("auto", "torch", "onnx")
# fp32 activation bytes per output pixel when a model declares none (measured for the nano
# student: ~930 B in ONNX Runtime, ~1,500 B in torch eager; rounded up)
DEFAULT_BYTES_PER_PIXEL = 2048.0


class StaleOnnxError(ModelError):
    """The ``.onnx`` twin was exported from other weights than the ``.safetensors`` beside it."""


def installed(module: str) -> bool:
    """Whether a module can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_runtimes() -> list[str]:
    """Runtimes usable in this environment, e.g. ``["onnx", "torch"]`` (the worker's ``info``)."""
    return [r for r, mod in (("onnx", "onnxruntime"), ("torch", "torch")) if installed(mod)]


def onnx_providers() -> list[str]:
    """ONNX Runtime's execution providers in this environment (empty without onnxruntime)."""
    if not installed("onnxruntime"):
        return []
    import onnxruntime as ort

    return list(ort.get_available_providers())


def cpu_threads() -> int:
    """CPU cores this process may use (affinity and cgroup quota aware where the OS says)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:  # cgroup v2 CPU quota (containers)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        n = min(n, int(env))
    return max(1, n)


def onnx_twin(path: str | Path) -> Path | None:
    """The ``.onnx`` file shipped beside a ``.safetensors`` model file, if any."""
    p = Path(path)
    if p.suffix == ".onnx":
        return p if p.is_file() else None
    twin = p.with_suffix(".onnx")
    return twin if twin.is_file() else None


def resolve_runtime(runtime: str, model: Any, device: str = "auto") -> str:
    """``auto`` -> ``onnx`` or ``torch`` for this model and device; checks explicit choices."""
    runtime = str(runtime or "auto").lower()
    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    is_module = not isinstance(model, str | Path)
    dev = str(device).split(":")[0].lower()
    if runtime == "torch":
        if not installed("torch"):
            raise ModelError(
                "the torch runtime was requested but torch is not installed in this environment "
                "(the light backend runs --runtime onnx)"
            )
        return "torch"
    target = None if is_module else _resolve_target(str(model))
    if runtime == "onnx":
        if is_module:
            raise ModelError("an in-memory torch module runs only with the torch runtime")
        if not installed("onnxruntime"):
            raise ModelError(
                "the onnx runtime was requested but onnxruntime is not installed "
                "(pip install onnxruntime, or bash scripts/setup_backend.sh --runtime onnx)"
            )
        if isinstance(target, Path) and onnx_twin(target) is None:
            raise ModelError(
                f"{target.name} has no ONNX twin ({target.with_suffix('.onnx').name}); export it "
                "with python -m slimdiffsr.models.onnx_export, or use --runtime torch"
            )
        if dev == "mps":
            raise DeviceError("Apple MPS runs with --runtime torch only")
        return "onnx"
    # auto
    if is_module:
        return "torch"
    # bicubic: torch's kernel where torch is installed (the numpy one is for the light backend)
    onnx_ok = installed("onnxruntime") and isinstance(target, Path) and bool(onnx_twin(target))
    if dev == "mps" or (dev == "cuda" and "CUDAExecutionProvider" not in onnx_providers()):
        onnx_ok = False
    if dev == "auto" and installed("torch") and "CUDAExecutionProvider" not in onnx_providers():
        # a GPU that torch sees but ONNX Runtime cannot use: the GPU is worth more than ORT
        onnx_ok = onnx_ok and not _torch_has_gpu()
    if onnx_ok:
        return "onnx"
    if installed("torch"):
        return "torch"
    if isinstance(target, str):  # bicubic: numpy, no library needed
        return "onnx"
    raise ModelError(
        "neither onnxruntime nor torch can run this model here; install one of them "
        "(bash scripts/setup_backend.sh --runtime onnx for the light backend)"
    )


def _torch_has_gpu() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(torch.cuda.is_available() or (mps is not None and mps.is_available()))


def _resolve_target(name: str) -> Path | str:
    from slimdiffsr.models.registry import resolve

    return resolve(name)


def declared_bytes_per_pixel(meta: dict[str, str], precision: str) -> float:
    """Activation bytes per output pixel that an ONNX file declares for ``precision``."""
    try:
        table = json.loads(meta.get("slimdiffsr.bytes_per_output_pixel", "{}"))
    except json.JSONDecodeError:
        table = {}
    key = "fp32" if precision == "fp32" else "fp16"
    v = table.get(key) or (table.get("fp32", 0) / (2 if key == "fp16" else 1))
    return float(v) if v else DEFAULT_BYTES_PER_PIXEL / (1 if key == "fp32" else 2)


def declared_model_bytes(model: Any, precision: str) -> float | None:
    """Bytes per output pixel declared by the ONNX twin of an installed model (name or path),
    or None (a torch module, bicubic, no twin)."""
    if not isinstance(model, str | Path):
        return None
    target = _resolve_target(str(model))
    twin = onnx_twin(target) if isinstance(target, Path) else None
    if twin is None:
        return None
    from slimdiffsr.models.onnx_export import read_onnx_metadata

    return declared_bytes_per_pixel(read_onnx_metadata(twin), precision)


# -- runners -----------------------------------------------------------------------------------
class BicubicRunner:
    """Bicubic upsampling in numpy (the baseline), identical to the torch ``BicubicSR``."""

    runtime = "numpy"
    device = "cpu"
    bytes_per_pixel = 64.0  # a few float32 planes per band
    max_tile = 512  # the dense interpolation matrices cost O(tile) per pixel

    def __init__(self, scale: int = 4) -> None:
        from slimdiffsr.models.registry import bicubic_card

        if scale not in (2, 3, 4, 8):
            raise ModelError(f"bicubic scale must be 2, 3, 4 or 8, got {scale}")
        self.scale = scale
        self.card = bicubic_card(scale)
        self.halo = int(self.card.halo)
        self.in_channels: int | None = None
        self.model_hash = f"bicubic-x{scale}"
        self.precision = "fp32"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from slimdiffsr.engine.resample import bicubic_upsample_np

        return bicubic_upsample_np(x, self.scale)


class OnnxRunner:
    """An ONNX model file in an ONNX Runtime session.

    ``device``: ``auto`` (CUDA where ONNX Runtime has it, else CPU), ``cuda`` or ``cpu``.
    Providers are tried in the order TensorRT, CUDA, CPU (as installed; ``provider="cuda"``
    skips TensorRT). ``precision`` fp16 on
    a GPU converts the graph to float16 (inputs and outputs stay float32) or, on TensorRT, lets
    it build fp16 engines; bf16 is TensorRT-only. On the CPU everything runs in fp32.
    """

    runtime = "onnx"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "auto",
        precision: str = "fp32",
        threads: int | None = None,
        model_hash: str | None = None,
        provider: str = "auto",
    ) -> None:
        import onnxruntime as ort

        from slimdiffsr.models.card import CARD_KEY, ModelCard
        from slimdiffsr.models.onnx_export import SOURCE_HASH_KEY

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        available = ort.get_available_providers()
        dev = str(device).split(":")[0].lower()
        gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        if provider == "cuda":  # ``provider`` (benchmarks): auto | cuda | tensorrt
            gpu = [p for p in gpu if p != "TensorrtExecutionProvider"]
        if dev == "cuda" and not gpu:
            raise DeviceError(
                "CUDA was requested but this ONNX Runtime has no CUDA execution provider "
                "(install onnxruntime-gpu, or use --device cpu)"
            )
        if dev not in ("auto", "cuda", "cpu"):
            raise DeviceError(f"the onnx runtime runs on auto, cuda or cpu, not {device!r}")
        use_gpu = bool(gpu) and dev in ("auto", "cuda")
        self.device = "cuda" if use_gpu else "cpu"
        if precision != "fp32" and not use_gpu:
            warnings.warn(
                f"{precision} runs only on a GPU; using fp32 on the CPU", UserWarning, stacklevel=3
            )
            precision = "fp32"
        if precision == "bf16" and "TensorrtExecutionProvider" not in gpu:
            warnings.warn(
                "bf16 needs the TensorRT execution provider in ONNX Runtime; using fp16",
                UserWarning,
                stacklevel=3,
            )
            precision = "fp16"
        self.precision = precision
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(threads or cpu_threads())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        providers: list[Any] = []
        model: Any = str(self.path)
        if use_gpu:
            if "TensorrtExecutionProvider" in gpu:
                opts = {
                    "trt_fp16_enable": precision == "fp16",
                    "trt_bf16_enable": precision == "bf16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(_cache_dir() / "trt"),
                }
                providers.append(("TensorrtExecutionProvider", opts))
            if "CUDAExecutionProvider" in gpu:
                providers.append(("CUDAExecutionProvider", {"cudnn_conv_algo_search": "DEFAULT"}))
            if precision == "fp16" and "TensorrtExecutionProvider" not in gpu:
                model = _float16_model(self.path)
        providers.append("CPUExecutionProvider")
        try:
            self.session = ort.InferenceSession(model, so, providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"ONNX Runtime cannot load {self.path.name}: {e}") from e
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        if CARD_KEY not in meta:
            raise ModelError(f"{self.path} is an ONNX file without a SlimDiffSR model card")
        self.card = ModelCard.from_json(meta[CARD_KEY], self.path)
        self.scale = int(self.card.scale)
        self.halo = int(self.card.halo)
        cfg = self.card.config or {}
        self.in_channels = int(cfg.get("in_channels") or len(self.card.bands) or 3)
        self.source_sha256 = meta.get(SOURCE_HASH_KEY, "")
        self.model_hash = model_hash or self.source_sha256[:16] or "unknown"
        self.bytes_per_pixel = declared_bytes_per_pixel(meta, precision)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            return self.session.run(None, {self.input_name: x})[0]
        except Exception as e:  # noqa: BLE001
            text = str(e).lower()
            if "out of memory" in text or "bad_alloc" in text or "failed to allocate" in text:
                raise OutOfMemoryError(
                    f"ONNX Runtime ran out of memory for a batch of {x.shape[0]} tiles of "
                    f"{x.shape[-1]} px; lower --batch-size, --tile or --memory-mb"
                ) from e
            raise


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    d = Path(base) / "slimdiffsr"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _float16_model(path: Path) -> Any:
    """The graph converted to float16 with float32 inputs/outputs (CUDA EP fp16)."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        warnings.warn("fp16 needs the onnx package; running fp32", UserWarning, stacklevel=4)
        return str(path)
    proto = onnx.load(str(path))
    half = convert_float_to_float16(proto, keep_io_types=True, op_block_list=["Resize"])
    return half.SerializeToString()


class TorchRunner:
    """A torch module (the model contract of docs/ARCHITECTURE.md) on a device, autocast for
    fp16/bf16; returns numpy float32."""

    runtime = "torch"

    def __init__(self, module: Any, device: Any, precision: str = "fp32") -> None:
        self.model = module
        self.torch_device = device
        self.device = str(device)
        self.precision = precision
        self.scale = int(module.scale)
        self.halo = int(module.halo)
        self.card = getattr(module, "card", None)
        self.model_hash = str(getattr(module, "model_hash", "unknown"))
        cfg = getattr(module, "config", None)
        n = getattr(cfg, "in_channels", None)
        self.in_channels = int(n) if n else None
        bpp = DEFAULT_BYTES_PER_PIXEL
        if getattr(self.card, "architecture", "") == "bicubic":
            bpp = BicubicRunner.bytes_per_pixel
        self.bytes_per_pixel = bpp / (1 if precision == "fp32" else 2)

    def forward_tensor(self, x: Any) -> Any:
        """(B, C, h, w) -> SR float32 torch tensor on the device."""
        import contextlib

        import torch

        from slimdiffsr.devices import precision_dtype

        x = torch.as_tensor(x).to(self.torch_device, non_blocking=True)
        dtype = precision_dtype(self.precision)
        ctx = (
            torch.autocast(device_type=self.torch_device.type, dtype=dtype)
            if dtype is not None
            else contextlib.nullcontext()
        )
        try:
            with torch.inference_mode(), ctx:
                y = self.model(x)
            return y.float()
        except torch.cuda.OutOfMemoryError as e:
            raise OutOfMemoryError(
                f"the device ran out of memory for a batch of {x.shape[0]} tiles of "
                f"{x.shape[-1]} px; lower --batch-size or --tile"
            ) from e
        except RuntimeError as e:
            if "out of memory" in str(e).lower():
                raise OutOfMemoryError(f"{e}; lower --batch-size or --tile") from e
            raise

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward_tensor(x).cpu().numpy()


def open_onnx(
    name_or_path: str | Path,
    *,
    scale: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
) -> OnnxRunner | BicubicRunner:
    """An installed model (name or path) as an ONNX Runtime runner; bicubic as numpy."""
    target = _resolve_target(str(name_or_path))
    if isinstance(target, str):  # bicubic, bicubic-x8
        s = scale or (int(target.split("-x")[1]) if "-x" in target else 4)
        if precision != "fp32":
            warnings.warn(
                f"{precision} runs only on a GPU; using fp32 on the CPU", UserWarning, stacklevel=3
            )
        return BicubicRunner(s)
    path = onnx_twin(target)
    if path is None:
        raise ModelError(f"{target.name} has no ONNX twin; use --runtime torch")
    runner = OnnxRunner(path, device=device, precision=precision, threads=threads)
    if target.suffix == ".safetensors":
        # the twin must be of these weights: a stale export would silently run other weights
        from slimdiffsr.models.card import file_sha256

        src_hash = file_sha256(target)
        if runner.source_sha256 and runner.source_sha256 != src_hash:
            raise StaleOnnxError(
                f"{path.name} was exported from other weights than {target.name}; re-export "
                "it with python -m slimdiffsr.models.onnx_export, or use --runtime torch"
            )
        runner.model_hash = src_hash[:16]
    if scale is not None and scale != runner.scale:
        raise ModelError(
            f"model {runner.card.name} is x{runner.scale}, but scale {scale} was requested"
        )
    return runner


def enforce_lr_consistency_np(sr: np.ndarray, lr: np.ndarray, scale: int, iterations: int = 3):
    """numpy twin of ``qa.enforce_lr_consistency`` (back-projection with bicubic residuals)."""
    from slimdiffsr.engine.resample import bicubic_upsample_np

    b, c, H, W = sr.shape
    for _ in range(iterations):
        down = sr.reshape(b, c, H // scale, scale, W // scale, scale).mean(axis=(3, 5))
        sr = sr + bicubic_upsample_np(lr - down, scale)
    return sr
