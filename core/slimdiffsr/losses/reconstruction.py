"""Reconstruction losses between SR and HR images, both (B, C, H, W) in [-1, 1].

L1 and L2 are plain means. LPIPS needs pretrained backbone weights; this product never downloads
anything, so :class:`LPIPSLoss` reads one local file holding the complete LPIPS state dict
(backbone + linear heads). Make that file once on a machine with internet access::

    import lpips, torch
    torch.save(lpips.LPIPS(net="vgg").state_dict(), "lpips_vgg.pth")
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _check(sr: torch.Tensor, hr: torch.Tensor) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} must have the same shape")


def l1_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean absolute error; robust to outliers, the loss of the shipped default (method section 10)."""
    _check(sr, hr)
    return F.l1_loss(sr.float(), hr.float())


def l2_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean squared error (the paper's pixel term)."""
    _check(sr, hr)
    return F.mse_loss(sr.float(), hr.float())


class LPIPSLoss(nn.Module):
    """LPIPS distance (mean over the batch), frozen, with weights from a local file only.

    ``weights`` is a ``.pth`` (loaded with ``weights_only=True``) or ``.safetensors`` file holding
    the full ``lpips.LPIPS(net=net)`` state dict. Inputs (B, C, H, W) in [-1, 1]: 3 bands are used
    as RGB, 1 band is repeated, more bands use the first three. Computed in float32.
    """

    def __init__(self, weights: str | Path, net: str = "vgg") -> None:
        super().__init__()
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS weights file not found: {path} (LPIPS never downloads; create it with "
                f"`torch.save(lpips.LPIPS(net={net!r}).state_dict(), {str(path)!r})` where you have "
                "internet access, or disable LPIPS)"
            )
        import lpips

        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(
                f"{path} is not a complete LPIPS-{net} state dict "
                f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})"
            )
        self.model = model.eval().requires_grad_(False)
        self.net = net

    def train(self, mode: bool = True) -> LPIPSLoss:
        """Stay in eval mode (dropout off) whatever the owner does."""
        super().train(mode)
        self.model.eval()
        return self

    @staticmethod
    def _rgb(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == 3:
            return x
        if c == 1:
            return x.expand(-1, 3, -1, -1)
        if c > 3:
            return x[:, :3]
        raise ValueError(f"LPIPS needs 1 or >= 3 bands, got {c}")

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        _check(sr, hr)
        with torch.autocast(device_type=sr.device.type, enabled=False):
            d = self.model(self._rgb(sr.float()), self._rgb(hr.float()))
        return d.mean()


__all__ = ["LPIPSLoss", "l1_loss", "l2_loss"]
