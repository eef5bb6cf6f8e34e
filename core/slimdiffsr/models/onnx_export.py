"""Export a student model file to ONNX, for ONNX Runtime and the torch-free light backend.

The ONNX file is a self-contained twin of the ``.safetensors`` file: the same network (bicubic
upsampling, stride padding and the residual included, so its input and output are exactly the
model contract's), opset 17, dynamic batch/height/width, and the same JSON model card in the
ONNX metadata (key ``slimdiffsr.card``). It also records the sha256 of the safetensors file it
came from (so outputs carry the same ``model_hash`` whichever runtime made them) and the
network's activation memory per output pixel, measured at export, from which the engine sizes
its tiles.

    python -m slimdiffsr.models.onnx_export core/slimdiffsr/zoo/slimdiffsr-nano-x4.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from slimdiffsr.models.card import CARD_KEY, FORMAT_KEY, FORMAT_VERSION, ModelCard, ModelFileError

OPSET = 17
SOURCE_HASH_KEY = "slimdiffsr.source_sha256"
BYTES_PER_PIXEL_KEY = "slimdiffsr.bytes_per_output_pixel"
INPUT_NAME, OUTPUT_NAME = "lr", "sr"


def _export_module(model: Any) -> Any:
    """The student's forward without Python branches on shapes, so one graph serves every size.

    ``SlimDiffSRStudent.forward`` pads only when the upsampled size is not a stride multiple; a
    traced graph would freeze that choice. Here the pad always runs (by 0 when not needed), in
    reflect mode (the network's choice whenever the image is larger than the pad, i.e. LR of at
    least ``pad_multiple / scale`` px, which the engine guarantees).
    """
    import torch
    import torch.nn.functional as F

    from slimdiffsr.models.bicubic import bicubic_upsample

    class StudentGraph(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, lr: torch.Tensor) -> torch.Tensor:
            net = self.net
            x = bicubic_upsample(lr, net.scale)
            h, w = x.shape[-2], x.shape[-1]
            m = net.pad_multiple
            ph, pw = (m - h % m) % m, (m - w % m) % m
            y = net.body(F.pad(x, (0, pw, 0, ph), mode="reflect"))[..., :h, :w]
            return x + y if net.config.residual else y

    return StudentGraph(model).eval()


_MEASURE = """
import sys, numpy as np
runtime, path, src, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) * 1024
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
x = np.random.default_rng(0).uniform(-1, 1, (1, 3, n, n)).astype(np.float32)
if runtime == "onnx":
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    s.run(None, {"lr": x[:, :, :8, :8]})
    base = rss()
    y = s.run(None, {"lr": x})[0]
else:
    import torch
    from slimdiffsr.models.registry import load_model
    m = load_model(src)
    with torch.inference_mode():
        m(torch.from_numpy(x[:, :, :8, :8]))
        base = rss()
        y = m(torch.from_numpy(x)).numpy()
print((hwm() - base) / (y.shape[-2] * y.shape[-1]))
"""


def measure_bytes_per_pixel(onnx_path: Path, model_path: Path, side: int = 96) -> float:
    """Peak memory growth of one fp32 forward per output pixel, the larger of both runtimes.

    Measured in fresh processes (Linux ``VmHWM``) on a ``side`` x ``side`` LR input, plus 25 %
    margin; declared in the ONNX metadata, where the engine reads it to size tiles. Returns 0
    where it cannot be measured (no /proc), and the engine then uses its own default.
    """
    import subprocess

    if not Path("/proc/self/status").exists():
        return 0.0
    worst = 0.0
    for runtime in ("onnx", "torch"):
        proc = subprocess.run(
            [sys.executable, "-c", _MEASURE, runtime, str(onnx_path), str(model_path), str(side)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise ModelFileError(f"measuring memory with {runtime} failed: {proc.stderr[-500:]}")
        worst = max(worst, float(proc.stdout.strip().splitlines()[-1]))
    return worst * 1.25


def export_onnx(
    model_path: str | Path,
    onnx_path: str | Path | None = None,
    *,
    sample_size: int = 32,
    measure_memory: bool = True,
) -> Path:
    """Write ``<model>.onnx`` beside the safetensors file (or to ``onnx_path``); returns it.

    The file is written atomically. Raises :class:`ModelFileError` for a non-student file.
    """
    import onnx
    import torch

    from slimdiffsr.models.card import file_sha256
    from slimdiffsr.models.registry import load_model

    model_path = Path(model_path)
    net = load_model(str(model_path), device="cpu")
    card: ModelCard | None = getattr(net, "card", None)
    if card is None or card.architecture != "student":
        raise ModelFileError(f"{model_path}: only student models export to ONNX")
    out = Path(onnx_path) if onnx_path else model_path.with_suffix(".onnx")
    graph = _export_module(net)
    x = torch.rand(1, net.config.in_channels, sample_size, sample_size) * 2 - 1
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with torch.inference_mode():
            torch.onnx.export(
                graph,
                (x,),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
                },
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        bpp = measure_bytes_per_pixel(tmp, model_path) if measure_memory else 0.0
        meta = {
            CARD_KEY: card.to_json(),
            FORMAT_KEY: FORMAT_VERSION,
            SOURCE_HASH_KEY: file_sha256(model_path),
        }
        if bpp > 0:
            meta[BYTES_PER_PIXEL_KEY] = json.dumps({"fp32": round(bpp), "fp16": round(bpp / 2)})
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        proto.producer_name = "slimdiffsr"
        proto.doc_string = card.description
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a half-written file beside the model
        raise
    os.replace(tmp, out)
    return out


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an ONNX file: through ONNX Runtime when installed (the light backend
    has it; it is also much quicker to import than ``onnx``), else the ``onnx`` package."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        try:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.log_severity_level = 3
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            return dict(sess.get_modelmeta().custom_metadata_map)
        except Exception as e:  # noqa: BLE001 - ORT raises its own types for foreign files
            raise ModelFileError(f"{path} is not an ONNX model file ({e})") from e
    try:
        import onnx
    except ImportError as e:
        raise ModelFileError(f"reading {path} needs onnxruntime or onnx installed") from e
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path} is not an ONNX model file ({e})") from e
    return {p.key: p.value for p in proto.metadata_props}


def read_onnx_card(path: str | Path) -> ModelCard:
    """The model card stored in an ONNX file's metadata."""
    meta = read_onnx_metadata(path)
    if CARD_KEY not in meta:
        raise ModelFileError(f"{path} is an ONNX file without a SlimDiffSR model card")
    return ModelCard.from_json(meta[CARD_KEY], path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="student .safetensors file")
    p.add_argument("-o", "--output", type=Path, help="ONNX file (default: beside the model)")
    p.add_argument(
        "--no-measure", action="store_true", help="do not measure and declare memory per pixel"
    )
    a = p.parse_args(argv)
    try:
        out = export_onnx(a.model, a.output, measure_memory=not a.no_measure)
    except ModelFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
