"""The student's tiny autoencoder (diffusers' AutoencoderTiny, TAESD layout) and fused convolutions.

The student never touches the 4-channel latent: the encoder's last conv (64->4) followed by the
UNet's conv_in (4->C0) is replaced by one 3x3 conv 64->C0 (``merge_conv1``), and the UNet's conv_out
followed by the decoder's first conv by one 3x3 conv C0->64 (``merge_conv2``). This module builds the
autoencoder, loads local TAESD-family weights where shapes match, and initialises a fused conv from
the pair it replaces.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def build_tiny_autoencoder(channels: int = 64, in_channels: int = 3) -> nn.Module:
    """diffusers' AutoencoderTiny with TAESD's block counts and ``channels`` everywhere."""
    from diffusers import AutoencoderTiny

    return AutoencoderTiny(
        in_channels=in_channels,
        out_channels=in_channels,
        encoder_block_out_channels=(channels,) * 4,
        decoder_block_out_channels=(channels,) * 4,
        latent_channels=4,
    )


def load_taesd_layers(vae: nn.Module, encoder_path: str | Path, decoder_path: str | Path) -> int:
    """Copy TAESD-family weights (plain state dicts of ``layers``) where key and shape match.

    Handles the taef2 files in ``shared/weights`` (their decoder list starts with a parameter-free
    clamp, so indices are shifted by one; extra ``pool`` modules and the 32-channel latent convs do
    not match and are skipped). Returns the number of tensors copied.
    """
    copied = 0
    for part, path in (("encoder", encoder_path), ("decoder", decoder_path)):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"autoencoder weights not found: {path}")
        src = torch.load(path, map_location="cpu", weights_only=True)
        layers = getattr(vae, part).layers
        own = layers.state_dict()
        shift = 0
        if part == "decoder" and "0.weight" not in src and "1.weight" in src:
            shift = 1
        new = {}
        for key, val in own.items():
            idx, rest = key.split(".", 1)
            skey = f"{int(idx) + shift}.{rest}"
            if skey in src and src[skey].shape == val.shape:
                new[key] = src[skey]
        layers.load_state_dict(new, strict=False)
        copied += len(new)
    return copied


def compose_convs(first: nn.Conv2d, second: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic kernel and bias of ``second(first(x))`` (stride 1, 'same' padding, no groups).

    ``K[o, i] = sum_m W2[o, m] (full-conv) W1[m, i]``, ``b = b2 + sum_m b1[m] * sum W2[o, m]``.
    Exact away from a border ring of width (k2 - 1) / 2 where zero padding differs.
    """
    w1, w2 = first.weight.detach(), second.weight.detach()
    k1, k2 = w1.shape[-1], w2.shape[-1]
    k = k1 + k2 - 1
    # full 2-D convolution of each kernel pair == conv2d of W1 (as input) with flipped W2
    inp = w1.permute(1, 0, 2, 3)  # (Cin, M, k1, k1)
    kernel = torch.flip(w2, dims=(-2, -1))  # (Cout, M, k2, k2)
    fused = F.conv2d(inp, kernel, padding=k2 - 1)  # (Cin, Cout, k, k)
    fused = fused.permute(1, 0, 2, 3).contiguous()
    assert fused.shape[-1] == k
    b1 = first.bias.detach() if first.bias is not None else torch.zeros(w1.shape[0])
    b2 = second.bias.detach() if second.bias is not None else torch.zeros(w2.shape[0])
    bias = b2 + (w2.sum(dim=(-2, -1)) * b1[None, :]).sum(dim=1)
    return fused, bias


@torch.no_grad()
def init_fused_conv(
    fused: nn.Conv2d,
    first: nn.Conv2d,
    second: nn.Conv2d,
    samples: int = 8192,
    generator: torch.Generator | None = None,
) -> str:
    """Initialise ``fused`` so that ``fused(x) ~= second(first(x))``.

    Uses the analytic composition when it fits in ``fused``'s kernel (e.g. 1x1 then 3x3), otherwise
    a least-squares fit of the 3x3 kernel and bias on random features (closed form, one solve).
    Returns ``"analytic"`` or ``"lstsq"``.
    """
    kernel, bias = compose_convs(first, second)
    kf, kc = fused.kernel_size[0], kernel.shape[-1]
    if kc <= kf:
        pad = (kf - kc) // 2
        fused.weight.copy_(F.pad(kernel, (pad, pad, pad, pad)))
        if fused.bias is not None:
            fused.bias.copy_(bias)
        return "analytic"
    # Least squares on patches: the composed kernel is kc x kc; sample kc x kc random patches,
    # target = composed response at the centre, regress on the central kf x kf sub-patch.
    cin = first.in_channels
    x = torch.randn(samples, cin, kc, kc, generator=generator)
    target = torch.einsum("nihw,oihw->no", x, kernel) + bias
    c0 = (kc - kf) // 2
    a = x[:, :, c0 : c0 + kf, c0 : c0 + kf].reshape(samples, -1)
    a = torch.cat([a, torch.ones(samples, 1)], dim=1)
    sol = torch.linalg.lstsq(a, target).solution  # (cin*kf*kf + 1, cout)
    fused.weight.copy_(sol[:-1].T.reshape_as(fused.weight))
    if fused.bias is not None:
        fused.bias.copy_(sol[-1])
    return "lstsq"
