"""Student efficiency vs the teacher-size network and RRDBNet, at 512x512 output.

Prints parameters, FLOPs (torch.utils.flop_counter; 1 MAC = 2 FLOPs) per component and CPU latency
(median of N runs, fp32, batch 1), each as a ratio to the ``paper`` student measured in the same
run. With ``--device cuda`` it times on the GPU (and fp16/bf16 with ``--precision``).

    python benchmarks/bench_student.py            # full table (the teacher-size net takes a while)
    python benchmarks/bench_student.py --quick    # student paper/nano and RRDBNet only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rrdbnet import RRDBNet  # noqa: E402

from slimdiffsr.models.student import SlimDiffSRStudent  # noqa: E402


class TeacherSize(nn.Module):
    """Full SD-2.x UNet + SD VAE, one step, random init: what the student replaces."""

    def __init__(self) -> None:
        super().__init__()
        from diffusers import AutoencoderKL, UNet2DConditionModel

        self.unet = UNet2DConditionModel(
            sample_size=64,
            cross_attention_dim=1024,
            attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True,
        )
        self.vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
        )
        self.register_buffer("text", torch.zeros(1, 77, 1024), persistent=False)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic")
        z = self.vae.encode(x).latent_dist.mean * 0.18215
        eps = self.unet(z, 999, encoder_hidden_states=self.text.expand(z.shape[0], -1, -1)).sample
        return self.vae.decode((z - eps) / 0.18215).sample


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def count(fn, *args) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn(*args)
    return fc.get_total_flops()


def student_components(m: SlimDiffSRStudent, lr: torch.Tensor) -> dict[str, int]:
    """FLOPs of the encoder body, fused convs, UNet and decoder body, each on its real input."""
    from slimdiffsr.models.bicubic import bicubic_upsample

    with torch.no_grad():
        x = bicubic_upsample(lr, m.scale)
        enc, dec = m.vae.encoder.layers, m.vae.decoder.layers
        f = enc[:-1](x)
        u = m.merge_conv1(f)
        h = m.unet(u)
        g = m.merge_conv2(h)
    return {
        "tiny-AE encoder": count(enc[:-1], x),
        "merge_conv1": count(m.merge_conv1, f),
        "UNet": count(m.unet, u),
        "merge_conv2": count(m.merge_conv2, h),
        "tiny-AE decoder": count(dec[1:], g),
    }


def flops(m: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    per = student_components(m, x) if isinstance(m, SlimDiffSRStudent) else {}
    return count(m, x), per


def latency(m: nn.Module, x: torch.Tensor, runs: int, precision: str) -> float:
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    times = []
    with torch.no_grad():
        for i in range(runs + 1):
            if x.is_cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
                m(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            if i:  # first run is warm-up
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", type=int, default=512, help="output side in pixels")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--quick", action="store_true", help="skip the teacher-size network")
    a = p.parse_args()
    torch.manual_seed(0)
    lr = torch.rand(1, 3, a.output // 4, a.output // 4, device=a.device) * 2 - 1
    nets: dict[str, nn.Module] = {
        "student paper": SlimDiffSRStudent.from_preset("paper"),
        "student nano": SlimDiffSRStudent.from_preset("nano"),
        "RRDBNet x4": RRDBNet(),
    }
    if not a.quick:
        nets["teacher-size (SD UNet+VAE)"] = TeacherSize()
    rows = []
    for name, net in nets.items():
        net = net.to(a.device).eval()
        total, per = flops(net, lr)
        runs = 1 if name.startswith("teacher") and a.device == "cpu" else a.runs
        t = latency(net, lr, runs, a.precision)
        rows.append((name, n_params(net), total, per, t))
        del net
    base = rows[0]
    print(
        f"output {a.output}x{a.output}, device {a.device}, {a.precision}, torch {torch.__version__}"
    )
    print(
        f"{'model':30s} {'params M':>9s} {'x':>6s} {'GFLOPs':>9s} {'x':>6s} {'latency s':>10s} {'x':>6s}"
    )
    for name, n, f, _, t in rows:
        print(
            f"{name:30s} {n / 1e6:9.2f} {n / base[1]:6.2f} {f / 1e9:9.1f} {f / base[2]:6.2f} "
            f"{t:10.3f} {t / base[4]:6.2f}"
        )
    print("\nFLOPs per component (G):")
    for name, _, _, per, _ in rows:
        if per:
            print(f"  {name}: " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in per.items()))


if __name__ == "__main__":
    main()
