"""The SlimDiffSR student: tiny autoencoder + fused convs + pruned UNet, one pass, no timestep.

``forward(lr)``: LR in [-1, 1] -> torch bicubic x s -> reflect-pad to the stride multiple ->
encoder layers 0-13 -> ``merge_conv1`` -> pruned UNet -> GN + SiLU -> ``merge_conv2`` -> decoder
layers 1-18 -> crop -> SR in [-1, 1]. Going through ``.layers`` bypasses TAESD's input rescale,
latent clamp and output map, as the authors' network does.

Presets: ``paper`` is the published layout (58,053,402 parameters, key for key); ``nano`` is the
same structure at 1/5 width with a residual over bicubic, for CPU training and the shipped
default. Ablations are config flags, each building a real variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from slimdiffsr.models.bicubic import bicubic_upsample
from slimdiffsr.models.card import ModelCard, save_model_file
from slimdiffsr.models.color import color_correct
from slimdiffsr.models.pruned_unet import PrunedUNet
from slimdiffsr.models.tiny_ae import build_tiny_autoencoder

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "nano": {
        "block_out_channels": (64, 128, 256, 256),
        "norm_num_groups": 16,
        "ff_mult": 2,
        "residual": True,
    },
}
ABLATIONS = ("no_fsc", "no_dsc", "no_qgam", "uniform", "full_vae", "no_fusion")


class SlimDiffSRStudent(ModelMixin, ConfigMixin):
    """The student network. Build with :meth:`from_preset`; load files with ``slimdiffsr.load_model``."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        ae_channels: int = 64,
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
        autoencoder: str = "tiny",
        fuse_convs: bool = True,
        residual: bool = False,
        keep_unused: bool = True,
        halo: int = 32,
    ) -> None:
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        if autoencoder not in ("tiny", "full_vae"):
            raise ValueError(f"autoencoder must be 'tiny' or 'full_vae', got {autoencoder!r}")
        if topology == "uniform" and len(block_out_channels) != 4:
            raise ValueError("the uniform topology needs four block_out_channels")
        full_vae = autoencoder == "full_vae"
        self.unet = PrunedUNet(
            topology=topology,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            ff_mult=ff_mult,
            use_fsc=use_fsc,
            use_dsc=use_dsc,
            use_qgam=use_qgam,
            num_queries=num_queries,
            qgam_dim=qgam_dim,
            keep_unused=keep_unused or full_vae or not fuse_convs,
        )
        c0 = block_out_channels[0]
        if full_vae:
            from diffusers import AutoencoderKL

            widths = tuple(int(w) for w in (128, 256, 512, 512))
            if ae_channels != 64:  # narrow SD VAE for small presets
                widths = (ae_channels, ae_channels * 2, ae_channels * 4, ae_channels * 4)
            self.vae = AutoencoderKL(
                in_channels=in_channels,
                out_channels=in_channels,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=widths,
                layers_per_block=2,
                latent_channels=4,
                norm_num_groups=min(32, widths[0]),
            )
        else:
            self.vae = build_tiny_autoencoder(ae_channels, in_channels)
            if fuse_convs:
                self.merge_conv1 = nn.Conv2d(ae_channels, c0, 3, padding=1)
                self.merge_conv2 = nn.Conv2d(c0, ae_channels, 3, padding=1)
        if residual:
            last = self._decoder_last_conv()
            if last is not None:
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
        self.pad_multiple = 8 * 2**self.unet.num_downsamples
        self.scale = scale
        self.halo = halo
        self.card: ModelCard | None = None
        self.model_hash = "unsaved"

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_preset(
        cls, preset: str = "paper", scale: int = 4, **overrides: Any
    ) -> SlimDiffSRStudent:
        """Build a preset with random weights; ablation names may be passed as ``flag=True``."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        cfg: dict[str, Any] = dict(PRESETS[preset])
        for flag in ABLATIONS:
            if overrides.pop(flag, False):
                cfg.update(ablation_config(flag, cfg))
        cfg.update(overrides)
        return cls(scale=scale, **cfg)

    @classmethod
    def from_card(cls, card: ModelCard) -> SlimDiffSRStudent:
        cfg = dict(card.config)
        cfg.pop("_class_name", None)
        cfg.pop("_diffusers_version", None)
        cfg["scale"] = card.scale
        model = cls(**cfg)
        model.card = card
        return model

    def _decoder_last_conv(self) -> nn.Conv2d | None:
        if self.config.autoencoder == "tiny":
            return self.vae.decoder.layers[-1]
        return self.vae.decoder.conv_out

    # -- forward ------------------------------------------------------------------------------
    def body(self, x: torch.Tensor, return_features: bool = False):
        """Network on an already upsampled, padded image in [-1, 1]."""
        cfg = self.config
        if cfg.autoencoder == "full_vae":
            z = self.vae.encode(x).latent_dist.mean * 0.18215
            out = self.unet(self.unet.conv_in(z), return_features)
            h, feats = out if return_features else (out, None)
            y = self.vae.decode(self.unet.conv_out(h) / 0.18215).sample
        else:
            enc, dec = self.vae.encoder.layers, self.vae.decoder.layers
            f = enc[:-1](x)
            u = self.merge_conv1(f) if cfg.fuse_convs else self.unet.conv_in(enc[-1](f))
            out = self.unet(u, return_features)
            h, feats = out if return_features else (out, None)
            g = self.merge_conv2(h) if cfg.fuse_convs else dec[0](self.unet.conv_out(h))
            y = dec[1:](g)
        return (y, feats) if return_features else y

    def forward_features(
        self, lr: torch.Tensor, color: str | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """SR plus the five distillation features (d0, d1, mid, up0, up1 outputs)."""
        return self._run(lr, color, True)

    def forward(self, lr: torch.Tensor, color: str | None = None) -> torch.Tensor:
        """LR (B, C, h, w) in [-1, 1] -> SR (B, C, s*h, s*w) in [-1, 1]; ``color``: adain|wavelet."""
        return self._run(lr, color, False)

    def _run(self, lr: torch.Tensor, color: str | None, return_features: bool):
        if lr.ndim != 4 or lr.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected LR of shape (B, {self.config.in_channels}, h, w), got {tuple(lr.shape)}"
            )
        x = bicubic_upsample(lr, self.scale)
        H, W = x.shape[-2:]
        m = self.pad_multiple
        ph, pw = (-H) % m, (-W) % m
        xp = x
        if ph or pw:
            mode = "reflect" if ph < H and pw < W else "replicate"
            xp = F.pad(x, (0, pw, 0, ph), mode=mode)
        out = self.body(xp, return_features)
        y, feats = out if return_features else (out, None)
        y = y[..., :H, :W]
        if self.config.residual:
            y = x + y
        y = color_correct(y, x, color)
        return (y, feats) if return_features else y

    # -- files --------------------------------------------------------------------------------
    def make_card(self, name: str, **fields: Any) -> ModelCard:
        cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.config.items()}
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        fields.setdefault("halo", self.halo)
        return ModelCard(name=name, architecture="student", scale=self.scale, config=cfg, **fields)

    def save_model(self, path: str | Path, card: ModelCard | None = None, **fields: Any) -> Path:
        """Write the product model file (safetensors + card). Fields update the card."""
        if card is None:
            card = self.card or self.make_card(Path(path).stem)
        fresh = self.make_card(card.name)
        card.config, card.architecture, card.scale = fresh.config, "student", self.scale
        for k, v in fields.items():
            setattr(card, k, v)
        self.card = card
        return save_model_file(self.state_dict(), card, path)

    # -- initialisation from Stable Diffusion -------------------------------------------------
    @torch.no_grad()
    def init_from_sd_unet(self, sd_state: dict[str, torch.Tensor]) -> list[str]:
        """Copy retained pretrained weights from an SD-2.x UNet state dict (slicing for ``uniform``).

        Returns the student keys that were initialised. New modules (FSC, DSC, QGAM, fused convs)
        keep their random initialisation, as in the paper.
        """
        own = self.unet.state_dict()
        copied: dict[str, torch.Tensor] = {}
        for key, val in own.items():
            skey = sd_key_for(key, self.config.topology)
            if skey not in sd_state:
                continue
            src = sd_state[skey]
            if src.shape == val.shape:
                copied[key] = src
            elif src.ndim == val.ndim and all(s >= v for s, v in zip(src.shape, val.shape)):
                copied[key] = slice_pretrained(key, src, val.shape)
        self.unet.load_state_dict(copied, strict=False)
        return sorted(copied)

    @classmethod
    def from_sd_pretrained(
        cls, unet_folder: str | Path, preset: str = "paper", scale: int = 4, **flags: Any
    ) -> SlimDiffSRStudent:
        """Build from a local diffusers SD-2.x / SD-Turbo UNet folder (LoRA merged beforehand).

        ``unet_folder`` is a folder with ``config.json`` and weights (for example the
        ``unet`` subfolder of sd-turbo, or the teacher's merged-UNet export).
        """
        from diffusers import UNet2DConditionModel

        folder = Path(unet_folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"no diffusers UNet at {folder}: expected {folder / 'config.json'} and its weights"
            )
        base = UNet2DConditionModel.from_pretrained(folder)
        model = cls.from_preset(preset, scale=scale, **flags)
        model.init_from_sd_unet(base.state_dict())
        return model


def ablation_config(flag: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Config changes of one ablation (method section 3)."""
    if flag == "no_fsc":
        return {"use_fsc": False}
    if flag == "no_dsc":
        return {"use_dsc": False}
    if flag == "no_qgam":
        return {"use_qgam": False}
    if flag == "no_fusion":
        return {"fuse_convs": False}
    if flag == "full_vae":
        return {"autoencoder": "full_vae"}
    if flag == "uniform":
        widths = cfg.get("block_out_channels", (320, 640, 1280, 1280))
        return {"topology": "uniform", "block_out_channels": tuple(int(w * 0.75) for w in widths)}
    raise ValueError(f"unknown ablation {flag!r}; choose from {ABLATIONS}")


SAP_PREFIXES = (
    ("mid_block.mid_block.", "down_blocks.2.resnets.0."),
    ("up_blocks.0.", "up_blocks.2."),
    ("up_blocks.1.", "up_blocks.3."),
)


def sd_key_for(key: str, topology: str) -> str:
    """The SD-2.x UNet key a student UNet key is initialised from."""
    if topology == "sap":
        for ours, theirs in SAP_PREFIXES:
            if key.startswith(ours):
                return theirs + key[len(ours) :]
    return key


def slice_pretrained(key: str, src: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``[:out, :in]`` slicing for width pruning; GEGLU projections keep both halves aligned."""
    if key.endswith("ff.net.0.proj.weight") or key.endswith("ff.net.0.proj.bias"):
        a, b = src.chunk(2, dim=0)
        half = shape[0] // 2
        idx = tuple(slice(0, s) for s in shape[1:])
        return torch.cat([a[(slice(0, half), *idx)], b[(slice(0, half), *idx)]], dim=0)
    return src[tuple(slice(0, s) for s in shape)].clone()
