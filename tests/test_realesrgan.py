"""The ncnn -> torch conversion of Real-ESRGAN: on a small synthetic ncnn file pair written here in
ncnn's own format (same layer pattern as the realesrgan-x4plus export), checked against the
original torch weights, our ncnn-graph interpreter and, when installed, the ncnn runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slimdiffsr.models.ncnn import (
    Layer,
    NcnnFormatError,
    NcnnGraph,
    convert_rrdbnet,
    read_param,
    write_ncnn,
)
from slimdiffsr.models.rrdbnet import RRDBNet

LEAKY = {9: 2, 10: [0.2]}


def export_rrdbnet(net: RRDBNet) -> tuple[list[Layer], dict[str, dict[str, np.ndarray]]]:
    """Write RRDBNet as the graph onnx2ncnn makes of Real-ESRGAN (Split/Concat/Eltwise/Interp)."""
    layers: list[Layer] = [Layer("Input", "input", [], ["data"])]
    weights: dict[str, dict[str, np.ndarray]] = {}
    counter = iter(range(10**6))

    def conv(m: torch.nn.Conv2d, x: str, act: bool) -> str:
        name, out = f"Conv_{next(counter)}", f"b{next(counter)}"
        p = {0: m.out_channels, 1: 3, 4: 1, 5: 1, 6: m.weight.numel(), **(LEAKY if act else {})}
        layers.append(Layer("Convolution", name, [x], [out], p))
        weights[name] = {"weight": m.weight.detach().numpy(), "bias": m.bias.detach().numpy()}
        return out

    def split(x: str, n: int) -> list[str]:
        outs = [f"{x}_s{i}" for i in range(n)]
        layers.append(Layer("Split", f"split_{next(counter)}", [x], list(outs)))
        return outs

    def add(a: str, b: str, coeffs: list[float] | None) -> str:
        out = f"b{next(counter)}"
        if coeffs is None:
            layers.append(Layer("BinaryOp", f"add_{next(counter)}", [a, b], [out], {0: 0}))
        else:
            layers.append(
                Layer("Eltwise", f"elt_{next(counter)}", [a, b], [out], {0: 1, 1: coeffs})
            )
        return out

    def uses(x: str, n: int) -> list[str]:
        return split(x, n) if n > 1 else [x]

    def rdb(block, x: str) -> str:
        # x feeds conv 0, the concats of convs 1-4 and the residual; conv j's output the concats
        # of convs j+1..4
        pending = [uses(x, 6)]
        y = conv(block.convs[0], pending[0].pop(0), act=True)
        for i in range(1, 5):
            pending.append(uses(y, 5 - i))
            cat = f"b{next(counter)}"
            layers.append(
                Layer("Concat", f"cat_{next(counter)}", [q.pop(0) for q in pending], [cat])
            )
            y = conv(block.convs[i], cat, act=i < 4)
        return add(y, pending[0].pop(0), [0.2, 1.0])

    x = conv(net.conv_first, "data", act=False)
    first = split(x, 2)
    h = first[0]
    for rrdb in net.body:
        hs = split(h, 2)
        y = hs[0]
        for block in rrdb.rdbs:
            y = rdb(block, y)
        h = add(y, hs[1], [0.2, 1.0])
    h = conv(net.conv_body, h, act=False)
    h = add(first[1], h, None)
    for m in (net.conv_up1, net.conv_up2):
        out = f"b{next(counter)}"
        layers.append(Layer("Interp", f"up_{next(counter)}", [h], [out], {0: 1, 1: 2.0, 2: 2.0}))
        h = conv(m, out, act=True)
    h = conv(net.conv_hr, h, act=True)
    conv(net.conv_last, h, act=False)
    layers[-1].outputs = ["output"]
    return layers, weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[RRDBNet, Path, Path]:
    torch.manual_seed(0)
    net = RRDBNet(nf=8, nb=2, gc=4).eval()
    for p in net.parameters():  # fp16-exact weights: the file stores float16, as Real-ESRGAN's does
        p.data = p.data.half().float()
    layers, weights = export_rrdbnet(net)
    d = tmp_path_factory.mktemp("ncnn")
    param, binary = d / "tiny.param", d / "tiny.bin"
    write_ncnn(layers, weights, param, binary, fp16=True)
    return net, param, binary


def test_synthetic_export_converts_exactly(tiny: tuple[RRDBNet, Path, Path]) -> None:
    net, param, binary = tiny
    assert param.read_text().startswith("7767517\n")
    conv = convert_rrdbnet(param, binary)
    assert (conv.nf, conv.nb, conv.gc) == (8, 2, 4)
    for (ka, a), (kb, b) in zip(net.state_dict().items(), conv.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(a, b), ka
    x = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    graph = NcnnGraph.load(param, binary)
    with torch.no_grad():
        ref, got, via_graph = net(x), conv(x), graph(x)
    assert got.shape == (1, 3, 40, 48)
    assert torch.equal(ref, got)
    assert float((via_graph - ref).abs().max()) < 1e-5
    assert float(ref.std()) > 1e-3  # a real signal, not zeros


def test_ncnn_runtime_agrees_within_one_dn(tiny: tuple[RRDBNet, Path, Path]) -> None:
    ncnn = pytest.importorskip("ncnn")
    net, param, binary = tiny
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    n = ncnn.Net()
    n.opt.use_vulkan_compute = False
    n.opt.num_threads = 1
    for k in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(n.opt, k, False)
    assert n.load_param(str(param)) == 0 and n.load_model(str(binary)) == 0
    ex = n.create_extractor()
    ex.input("data", ncnn.Mat(np.ascontiguousarray(x[0].numpy())))
    ret, out = ex.extract("output")
    assert ret == 0
    with torch.no_grad():
        ours = convert_rrdbnet(param, binary)(x)[0].numpy()
    theirs = np.array(out)
    assert theirs.shape == ours.shape
    assert np.abs(ours - theirs).max() * 255 < 1.0


def test_broken_files_fail_with_the_reason(
    tiny: tuple[RRDBNet, Path, Path], tmp_path: Path
) -> None:
    _, param, binary = tiny
    cut = tmp_path / "cut.bin"
    cut.write_bytes(binary.read_bytes()[:-100])
    with pytest.raises(NcnnFormatError, match="ends early|bytes left"):
        convert_rrdbnet(param, cut)
    extra = tmp_path / "extra.bin"
    extra.write_bytes(binary.read_bytes() + b"\0" * 8)
    with pytest.raises(NcnnFormatError, match="8 bytes left"):
        convert_rrdbnet(param, extra)
    bad = tmp_path / "bad.param"
    bad.write_text("12345\n1 1\nInput in 0 1 data\n")
    with pytest.raises(NcnnFormatError, match="magic"):
        read_param(bad)
    other = tmp_path / "other.param"  # a graph that is not an RRDBNet
    other.write_text(
        "7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=4 1=3 4=1 5=1 6=108\n"
    )
    ob = tmp_path / "other.bin"
    ob.write_bytes(b"\0" * 4 + np.zeros(108 + 4, "<f4").tobytes())
    with pytest.raises(NcnnFormatError, match="not an RRDBNet"):
        convert_rrdbnet(other, ob)


def test_registry_names_the_missing_teacher_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slimdiffsr.models.registry import list_models, load_model
    from slimdiffsr.weights import WeightsMissingError

    monkeypatch.setenv("SLIMDIFFSR_WEIGHTS", str(tmp_path))
    assert "realesrgan-x4plus" not in [e.name for e in list_models()]
    with pytest.raises(WeightsMissingError, match="realesrgan_x4plus.safetensors"):
        load_model("realesrgan-x4plus")


def _reference_forward(net: RRDBNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RRDBNet's forward as it was written before the trunk/head split (ESRGAN's layout)."""
    import torch.nn.functional as F

    feat = net.conv_first(x)
    trunk = feat + net.conv_body(net.body(feat))
    up = F.leaky_relu(net.conv_up1(F.interpolate(trunk, scale_factor=2, mode="nearest")), 0.2)
    up = F.leaky_relu(net.conv_up2(F.interpolate(up, scale_factor=2, mode="nearest")), 0.2)
    return net.conv_last(F.leaky_relu(net.conv_hr(up), 0.2)), trunk


def test_trunk_features_come_from_the_same_pass(tiny: tuple[RRDBNet, Path, Path]) -> None:
    net = tiny[0]
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, ref_trunk = _reference_forward(net, x)
        out, trunk = net.forward_features(x)
        plain = net(x)
    assert trunk.shape == (2, net.nf, 12, 10) and out.shape == (2, 3, 48, 40)
    assert torch.equal(plain, ref) and torch.equal(out, ref) and torch.equal(trunk, ref_trunk)
    assert float(trunk.std()) > 1e-3


@pytest.fixture(scope="module")
def cache_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RRDBNet, Path, Path]:
    """A tiny teacher (nb=1) saved as the converted file is, and a folder of two images."""
    import rasterio
    from affine import Affine
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("cache_inputs")
    torch.manual_seed(4)
    net = RRDBNet(nf=8, nb=1, gc=4).eval()
    save_file(net.state_dict(), str(d / "tiny_rrdb.safetensors"))
    imgs = d / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(5)
    for name in ("a.tif", "b.tif"):
        data = rng.integers(0, 256, (3, 144, 160), dtype=np.uint8)
        profile = {
            "driver": "GTiff", "height": 144, "width": 160, "count": 3, "dtype": "uint8",
            "crs": "EPSG:32633", "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4e6),
        }  # fmt: skip
        with rasterio.open(imgs / name, "w", **profile) as dst:
            dst.write(data)
    return net, d / "tiny_rrdb.safetensors", imgs


def test_teacher_cache_stores_trunk_features_on_the_latent_grid(
    cache_inputs: tuple[RRDBNet, Path, Path], tmp_path: Path
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from slimdiffsr.data.teacher_cache import build_cache, main

    net, teacher, imgs = cache_inputs
    out = build_cache(str(imgs), teacher, n=3, out=tmp_path / "c.safetensors", crop_size=128)
    c = load_file(str(out))
    assert c["teacher_feat"].dtype == torch.float16
    assert c["teacher_feat"].shape == (3, net.nf, 16, 16)  # HR 128 / 8: the student's latent grid
    assert c["lr"].shape == (3, 3, 32, 32) and c["teacher"].shape == (3, 3, 128, 128)
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["features"] == "rrdb_trunk_avgpool2"
    with torch.no_grad():  # the stored LR is the float16 rounding of the LR the teacher saw
        out_t, trunk = net.forward_features(c["lr"].float())
    assert float((c["teacher"].float() - out_t.clamp(0, 1)).abs().max()) < 1e-3
    pooled = torch.nn.functional.avg_pool2d(trunk, 2)  # area average to HR/8
    assert float(pooled.std()) > 0.1
    assert float((c["teacher_feat"].float() - pooled).abs().max()) < 5e-3

    # --no-features: the old layout; a .part of it resumes into a cache with features
    plain = tmp_path / "plain.safetensors"
    assert main(["--data", str(imgs), "--teacher", str(teacher), "--n", "2", "--out", str(plain),
                 "--no-features"]) == 0  # fmt: skip
    old = load_file(str(plain))
    assert "teacher_feat" not in old
    with safe_open(str(plain), "pt") as f:
        assert "features" not in f.metadata()
    resumed = tmp_path / "resumed.safetensors"
    plain.rename(resumed.with_name(resumed.name + ".part"))
    r = load_file(str(build_cache(str(imgs), teacher, n=3, out=resumed, crop_size=128)))
    for k in ("hr", "lr", "teacher"):
        assert torch.equal(r[k], c[k]), k
    assert r["teacher_feat"].shape == c["teacher_feat"].shape
    assert torch.equal(r["teacher_feat"][2], c["teacher_feat"][2])  # computed, not recomputed
    assert float((r["teacher_feat"][:2].float() - c["teacher_feat"][:2].float()).abs().max()) < 1e-2
