"""The student's UNet: SD-2.x blocks, semantically pruned, with FSC, DSC and QGAM inside.

Module attribute names mirror diffusers' ``UNet2DConditionModel`` (``down_blocks.0.resnets.1.norm1``
...) because they are the checkpoint contract, but the blocks are our own: no cross-attention, no
time embedding in the ResNets, and a stack of skips that depends on which levels are kept.

Two topologies are supported:
- ``sap`` (the paper): down levels 0-1 (level 1 without its downsampler), a single ResNet as mid
  block (``mid_block.mid_block``), up levels 2-3 of SD re-indexed as 0-1. Runs at H/8 and H/16.
- ``uniform`` (ablation W/O SAP): all four levels and the original ResNet-attention-ResNet mid
  block, every width scaled (0.75 x 320/640/1280/1280 = 240/480/960/960).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimdiffsr.models.dsc import DirectionSeparableConv
from slimdiffsr.models.fsc import FrequencySeparableConv
from slimdiffsr.models.qgam import QueryGlobalAggregation

GROUP_CANDIDATES = (32, 24, 16, 12, 8, 6, 4, 2, 1)


def num_groups(channels: int, preferred: int = 32) -> int:
    """GroupNorm groups: ``preferred`` when it divides, else the first candidate that does."""
    if channels % preferred == 0:
        return preferred
    return next(g for g in GROUP_CANDIDATES if channels % g == 0)


class ResnetBlock(nn.Module):
    """``y = conv2(SiLU(GN2(conv1(SiLU(GN1 x))))) + shortcut(x)``; conv1 = FSC, conv2 = DSC."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 32,
        use_fsc: bool = True,
        use_dsc: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups(in_channels, groups), in_channels, eps=1e-5)
        self.conv1 = (
            FrequencySeparableConv(in_channels, out_channels)
            if use_fsc
            else nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.norm2 = nn.GroupNorm(num_groups(out_channels, groups), out_channels, eps=1e-5)
        self.conv2 = (
            DirectionSeparableConv(out_channels)
            if use_dsc
            else nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        sc = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return sc + h


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    """diffusers' GEGLU feed-forward: ``net.0.proj`` C -> 2*mult*C, ``net.2`` mult*C -> C."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList(
            [GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.net:
            x = m(x)
        return x


def make_self_attention(
    channels: int, use_qgam: bool, num_queries: int, qgam_dim: int
) -> nn.Module:
    if use_qgam:
        return QueryGlobalAggregation(channels, num_queries=num_queries, dim=qgam_dim)
    from diffusers.models.attention_processor import Attention

    # The pretrained SD self-attention (64-d heads), kept by the W/O QGAM ablation.
    return Attention(query_dim=channels, heads=max(1, channels // 64), dim_head=64, bias=False)


class TransformerBlock(nn.Module):
    """BasicTransformerBlock without cross-attention: ``x += attn1(LN1 x); x += ff(LN3 x)``."""

    def __init__(self, dim: int, ff_mult: int, use_qgam: bool, num_queries: int, qgam_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = make_self_attention(dim, use_qgam, num_queries, qgam_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        return x + self.ff(self.norm3(x))


class Transformer2D(nn.Module):
    """GN -> tokens -> proj_in -> block -> proj_out -> image, plus the input (linear projections)."""

    def __init__(self, dim: int, groups: int, ff_mult: int, use_qgam: bool, nq: int, qd: int):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(dim, groups), dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(dim, ff_mult, use_qgam, nq, qd)])
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        t = self.proj_in(t)
        for blk in self.transformer_blocks:
            t = blk(t)
        t = self.proj_out(t)
        return t.reshape(b, h, w, c).permute(0, 3, 1, 2) + x


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    """A down or up level: resnets (with attentions after each, if any) and an optional sampler."""

    def __init__(self) -> None:
        super().__init__()


class TimestepEmbedding(nn.Module):
    """Kept only so checkpoints keep the published layout (``time_embedding.linear_1/2``)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)


class MidBlock(nn.Module):
    """Container named like the published checkpoint: ``mid_block.mid_block`` is one ResNet."""

    def __init__(self, resnet: ResnetBlock) -> None:
        super().__init__()
        self.mid_block = resnet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mid_block(x)


class UNetMid(nn.Module):
    """SD's mid block (ResNet, attention, ResNet) for the ``uniform`` topology."""

    def __init__(
        self, ch: int, groups: int, ff_mult: int, rflags: dict, use_qgam: bool, nq: int, qd: int
    ):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(ch, ch, groups, **rflags) for _ in range(2)])
        self.attentions = nn.ModuleList([Transformer2D(ch, groups, ff_mult, use_qgam, nq, qd)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        return self.resnets[1](self.attentions[0](x))


class PrunedUNet(nn.Module):
    """The student's UNet body on a ``C0`` feature map at H/8; returns GN+SiLU features (C0)."""

    def __init__(
        self,
        topology: str = "sap",
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        ff_mult: int = 4,
        use_fsc: bool = True,
        use_dsc: bool = True,
        use_qgam: bool = True,
        num_queries: int = 32,
        qgam_dim: int = 64,
        latent_channels: int = 4,
        keep_unused: bool = True,
    ) -> None:
        super().__init__()
        if topology not in ("sap", "uniform"):
            raise ValueError(f"topology must be 'sap' or 'uniform', got {topology!r}")
        ch = list(block_out_channels)
        g = norm_num_groups
        rflags = {"use_fsc": use_fsc, "use_dsc": use_dsc}
        attn = {"ff_mult": ff_mult, "use_qgam": use_qgam, "nq": num_queries, "qd": qgam_dim}
        self.topology = topology

        def transformer(c: int) -> Transformer2D:
            return Transformer2D(c, g, attn["ff_mult"], attn["use_qgam"], attn["nq"], attn["qd"])

        if topology == "sap":
            # (out channels, has attention, has downsampler) for the kept down levels
            down_spec = [(ch[0], True, True), (ch[1], True, False)]
            up_spec = [(ch[1], True, True), (ch[0], True, False)]  # SD up_blocks[2:]
        else:
            down_spec = [(ch[0], True, True), (ch[1], True, True), (ch[2], True, True)]
            down_spec.append((ch[3], False, False))
            up_spec = [(ch[3], False, True), (ch[2], True, True), (ch[1], True, True)]
            up_spec.append((ch[0], True, False))

        c0 = ch[0]
        if keep_unused:
            self.conv_in = nn.Conv2d(latent_channels, c0, 3, padding=1)
            self.time_embedding = TimestepEmbedding(c0, c0 * 4)
        skips = [c0]
        cur = c0
        self.down_blocks = nn.ModuleList()
        for out_c, has_attn, has_down in down_spec:
            blk = Block()
            blk.resnets = nn.ModuleList()
            blk.attentions = nn.ModuleList() if has_attn else None
            for _ in range(layers_per_block):
                blk.resnets.append(ResnetBlock(cur, out_c, g, **rflags))
                if has_attn:
                    blk.attentions.append(transformer(out_c))
                cur = out_c
                skips.append(cur)
            blk.downsamplers = nn.ModuleList([Downsample(cur)]) if has_down else None
            if has_down:
                skips.append(cur)
            self.down_blocks.append(blk)

        if topology == "sap":
            mid_c = ch[2]
            self.mid_block = MidBlock(ResnetBlock(cur, mid_c, g, **rflags))
            cur = mid_c
        else:
            self.mid_block = UNetMid(cur, g, ff_mult, rflags, use_qgam, num_queries, qgam_dim)

        self.up_blocks = nn.ModuleList()
        for out_c, has_attn, has_up in up_spec:
            blk = Block()
            blk.resnets = nn.ModuleList()
            blk.attentions = nn.ModuleList() if has_attn else None
            for _ in range(layers_per_block + 1):
                skip_c = skips.pop()
                blk.resnets.append(ResnetBlock(cur + skip_c, out_c, g, **rflags))
                if has_attn:
                    blk.attentions.append(transformer(out_c))
                cur = out_c
            blk.upsamplers = nn.ModuleList([Upsample(cur)]) if has_up else None
            self.up_blocks.append(blk)
        if skips:
            raise ValueError(f"internal: {len(skips)} skips left unconsumed")
        self.conv_norm_out = nn.GroupNorm(num_groups(cur, g), cur, eps=1e-5)
        if keep_unused:
            self.conv_out = nn.Conv2d(cur, latent_channels, 3, padding=1)
        self.out_channels = cur
        self.num_downsamples = sum(1 for s in down_spec if s[2])

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """x: (B, C0, h, w), h and w multiples of 2**num_downsamples.

        With ``return_features`` also returns the per-level outputs used for distillation
        (each down level, the mid block, each up level).
        """
        skips = [x]
        feats: list[torch.Tensor] = []
        h = x
        for blk in self.down_blocks:
            for i, res in enumerate(blk.resnets):
                h = res(h)
                if blk.attentions is not None:
                    h = blk.attentions[i](h)
                skips.append(h)
            if blk.downsamplers is not None:
                h = blk.downsamplers[0](h)
                skips.append(h)
            feats.append(h)
        h = self.mid_block(h)
        feats.append(h)
        for blk in self.up_blocks:
            for i, res in enumerate(blk.resnets):
                h = res(torch.cat([h, skips.pop()], dim=1))
                if blk.attentions is not None:
                    h = blk.attentions[i](h)
            if blk.upsamplers is not None:
                h = blk.upsamplers[0](h)
            feats.append(h)
        out = F.silu(self.conv_norm_out(h))
        return (out, feats) if return_features else out
