"""Discriminator on a frozen DINO ViT with trainable multi-level heads (method.md section 4.5).

A self-supervised ViT already separates natural from unnatural texture, so only small heads are
trained (the vision-aided-GAN recipe): spectral-norm conv heads on two intermediate patch maps and
a linear head on the last CLS token. Images go through DiffAugment (colour, translation, cutout),
then ``(x + 1) / 2``, an area resize to the ViT's input size and normalisation. The backbone keeps
DINO's parameter names (``patch_embed.proj``, ``blocks.{i}.attn.qkv``, ...) so that
``dino_vitbase16_pretrain.pth`` loads strictly from a local file; tests use random weights and the
small :meth:`DinoDiscriminator.tiny` configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# DiffAugment (Zhao et al. 2020), on images in [-1, 1]
# ------------------------------------------------------------------------------------------------


def _rand(shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype)


def augment_color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness, saturation and contrast per sample."""
    b = x.shape[0]
    x = x + (_rand((b, 1, 1, 1), x, generator) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand((b, 1, 1, 1), x, generator) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((b, 1, 1, 1), x, generator) + 0.5) + mean


def augment_translation(
    x: torch.Tensor, ratio: float = 0.125, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each sample by up to ``ratio`` of its size, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = x.device
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), generator=generator, device=dev)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=generator, device=dev)
    gb, gy, gx = torch.meshgrid(
        torch.arange(b, device=dev),
        torch.arange(h, device=dev),
        torch.arange(w, device=dev),
        indexing="ij",
    )
    gy = (gy + ty + 1).clamp(0, h + 1)
    gx = (gx + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[gb, gy, gx].permute(0, 3, 1, 2)


def augment_cutout(
    x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero a random square of ``ratio`` times the image size per sample."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dev = x.device
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=generator, device=dev)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=generator, device=dev)
    gb, gy, gx = torch.meshgrid(
        torch.arange(b, device=dev),
        torch.arange(ch, device=dev),
        torch.arange(cw, device=dev),
        indexing="ij",
    )
    gy = (gy + oy - ch // 2).clamp(0, h - 1)
    gx = (gx + ox - cw // 2).clamp(0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=dev)
    mask[gb, gy, gx] = 0
    return x * mask.unsqueeze(1)


AUGMENTS = {"color": augment_color, "translation": augment_translation, "cutout": augment_cutout}


def diff_augment(
    x: torch.Tensor, policy: Sequence[str], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply the named differentiable augmentations in order (``color``, ``translation``, ``cutout``)."""
    for name in policy:
        if name not in AUGMENTS:
            raise ValueError(
                f"augmentation {name!r} does not exist; choose from {sorted(AUGMENTS)}"
            )
        x = AUGMENTS[name](x, generator=generator)
    return x


# ------------------------------------------------------------------------------------------------
# DINO-style ViT backbone (parameter names as in facebookresearch/dino)
# ------------------------------------------------------------------------------------------------


class _PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """DINO's ViT without its (identity) head; returns the token sequence after chosen blocks."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        self.grid = img_size // patch_size
        self.patch_embed = _PatchEmbed(patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid**2 + 1, embed_dim) * 0.02)
        self.blocks = nn.ModuleList([_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor, blocks: Sequence[int]) -> dict[int, torch.Tensor]:
        """Tokens (B, 1 + N, D) after each 1-based block index in ``blocks``."""
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + self.pos_embed.to(x.dtype)
        wanted, out = set(blocks), {}
        for i, blk in enumerate(self.blocks[: max(blocks)], start=1):
            x = blk(x)
            if i in wanted:
                out[i] = x
        return out


def load_dino_weights(vit: VisionTransformer, path: str | Path) -> None:
    """Load a DINO checkpoint (plain, ``teacher``/``student`` dicts, ``module.``/``backbone.``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"DINO backbone weights not found: {path} (expected e.g. dino_vitbase16_pretrain.pth)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "teacher" in state:
        state = state["teacher"]
    clean = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            key = key.removeprefix(prefix)
        if not key.startswith("head."):
            clean[key] = value
    vit.load_state_dict(clean, strict=True)


# ------------------------------------------------------------------------------------------------
# Heads and the discriminator
# ------------------------------------------------------------------------------------------------


class _Blur(nn.Module):
    """3x3 binomial low-pass, depthwise, reflect padding (anti-aliases the strided convs)."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.kernel.to(x.dtype).expand(c, 1, 3, 3)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), w, groups=c)


class PatchHead(nn.Module):
    """blur -> SN conv3 s2 (D -> C) -> LeakyReLU(0.2) -> blur -> SN conv1 s2 (C -> 1)."""

    def __init__(self, in_channels: int, channels: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _Blur(),
            spectral_norm(nn.Conv2d(in_channels, channels, 3, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            _Blur(),
            spectral_norm(nn.Conv2d(channels, 1, 1, stride=2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ClsHead(nn.Module):
    """SN linear D -> C -> LeakyReLU(0.2) -> SN linear C -> 1 on the CLS token."""

    def __init__(self, in_features: int, channels: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            spectral_norm(nn.Linear(in_features, channels)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Linear(channels, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DinoDiscriminator(nn.Module):
    """Frozen ViT backbone + trainable heads; ``forward(x)`` returns one logit tensor per head.

    Args:
        backbone_weights: local DINO checkpoint; ``None`` keeps random weights (tests only: the
            adversarial term is then meaningless, and a warning says so).
        img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio: the ViT (B/16 by default).
        feature_blocks: 1-based blocks whose patch maps get a conv head (5 and 9).
        cls_block: block whose normalised CLS token gets the linear head (12).
        head_channels: width of every head (128).
        augment: DiffAugment policy applied to every input.
        mean, std: normalisation after ``(x + 1) / 2`` and the area resize.
    """

    def __init__(
        self,
        backbone_weights: str | Path | None = None,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        feature_blocks: Sequence[int] = (5, 9),
        cls_block: int = 12,
        head_channels: int = 128,
        augment: Sequence[str] = ("color", "translation", "cutout"),
        mean: Sequence[float] = (0.4815, 0.4578, 0.4082),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        blocks = [*feature_blocks, cls_block]
        if not all(1 <= b <= depth for b in blocks):
            raise ValueError(
                f"feature_blocks {feature_blocks} and cls_block {cls_block} must lie in 1..{depth}"
            )
        for name in augment:
            if name not in AUGMENTS:
                raise ValueError(
                    f"augmentation {name!r} does not exist; choose from {sorted(AUGMENTS)}"
                )
        self.img_size = img_size
        self.feature_blocks = tuple(feature_blocks)
        self.cls_block = cls_block
        self.augment = tuple(augment)
        self.backbone = VisionTransformer(
            img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio
        )
        if backbone_weights is not None:
            load_dino_weights(self.backbone, backbone_weights)
        else:
            logger.warning("DinoDiscriminator: random backbone (no backbone_weights given)")
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.patch_heads = nn.ModuleList(
            [PatchHead(embed_dim, head_channels) for _ in self.feature_blocks]
        )
        self.cls_head = ClsHead(embed_dim, head_channels)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def tiny(cls, **overrides) -> DinoDiscriminator:
        """A small random configuration for CPU tests (32 px input, 3 blocks of width 32)."""
        cfg = dict(
            img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2,
            feature_blocks=(1, 2), cls_block=3, head_channels=16,
        )  # fmt: skip
        cfg.update(overrides)
        return cls(**cfg)

    def train(self, mode: bool = True) -> DinoDiscriminator:
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] image -> DiffAugment -> [0, 1] -> area resize -> normalised ViT input."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W), got {tuple(x.shape)}")
        x = diff_augment(x, self.augment)
        x = (x + 1) / 2
        x = F.interpolate(x, size=(self.img_size, self.img_size), mode="area")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[-1, 1] images (B, 3, H, W) -> [patch logits (B, 1, g', g') per block..., cls (B, 1)]."""
        tokens = self.backbone(self.preprocess(x), [*self.feature_blocks, self.cls_block])
        g = self.backbone.grid
        logits = []
        for head, blk in zip(self.patch_heads, self.feature_blocks):
            t = tokens[blk][:, 1:]
            logits.append(head(t.transpose(1, 2).reshape(t.shape[0], -1, g, g)))
        cls_tok = self.backbone.norm(tokens[self.cls_block][:, 0])
        logits.append(self.cls_head(cls_tok))
        return logits

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The heads only (the backbone comes from its own file)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


__all__ = [
    "AUGMENTS",
    "ClsHead",
    "DinoDiscriminator",
    "PatchHead",
    "VisionTransformer",
    "diff_augment",
    "load_dino_weights",
]
