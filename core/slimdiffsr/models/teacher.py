"""The uncertainty-guided one-step diffusion teacher (method.md section 4, stage 1).

``teacher(lr)``: LR in [-1, 1] -> torch bicubic x s -> reflect-pad to a multiple of 64 -> frozen
VAE encoder (posterior mean, x 0.18215) gives ``z_L`` -> frozen estimator U gives ``mu = z_L + r``
and the log-variance ``s`` -> predictor P gives ``log sigma_hat`` -> float timestep t by table
inversion (one per image by default, or one per latent pixel) -> ``eps = UNet(mu, t, empty
prompt)`` -> ``z_H = (mu - sqrt(1 - abar) eps) / sqrt(abar)`` -> VAE decoder -> crop. Nothing is
clamped and no noise is added. The fixed-timestep ablation skips U and P and uses ``z_L`` at a
constant t.

The SD-2.x UNet and VAE come from a local diffusers folder (``unet/``, ``vae/``, ``scheduler/``
and ``empty_prompt_embeds.safetensors``); LoRA (peft) adapts the UNet (rank 32) and the VAE decoder
(rank 16). Only LoRA and P train. Five UNet features (method.md section 5 table) are returned for
distillation. :meth:`SlimDiffSRTeacher.export_merged` writes a plain diffusers folder with the LoRA
merged, which loads back here and which the student builder can start from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.resnet import ResnetBlock2D
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from torch import nn

from slimdiffsr.models.bicubic import bicubic_upsample
from slimdiffsr.models.sd_folder import (
    ESTIMATOR_DIR,
    PROMPT_FILE,
    TRAINED_CONFIG,
    TRAINED_WEIGHTS,
    check_sd_shape,
    load_alphas_cumprod,
    load_prompt_embeds,
    require,
    require_weights,
    save_scheduler,
)
from slimdiffsr.models.timestep import (
    NoiseLevelPredictor,
    alpha_bar_from_sigma,
    log_sigma_bounds,
    per_image_sigma,
    sigma_to_timestep,
    sigmas_from_alphas_cumprod,
    timestep_to_sigma,
)
from slimdiffsr.models.uncertainty import UncertaintyEstimator

UNET_LORA_TARGETS: tuple[str, ...] = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
)  # fmt: skip
VAE_LORA_REGEX = (
    r"^decoder\..*(conv1|conv2|conv_in|conv_shortcut|conv|conv_out|to_k|to_q|to_v|to_out\.0)$"
)
FEATURE_NAMES = ("d0", "d1", "up1", "up2", "up3")


@dataclass
class TeacherConfig:
    """Teacher switches (method.md sections 4.1-4.4 and 9; defaults are the paper's or ours).

    timestep_mode: ``adaptive`` (U + P + inversion) or ``fixed`` (ablation: z_L at ``fixed_timestep``).
    spatial_timestep: one t per latent pixel instead of one per image.
    t_min, t_max: clamp range of t, through ``log sigma_hat``.
    unet_input: ``mu`` or ``z_l``. input_scaling: ``none`` or ``sqrt_alpha`` (feed sqrt(abar) x).
    predictor_latent: ``z_l`` or ``z_h`` (then ``forward`` needs ``hr``).
    lora_merged: the folder's UNet and VAE already hold the LoRA (an :meth:`export_merged`
        folder): add no adapters; only P is trainable.
    """

    scale: int = 4
    timestep_mode: str = "adaptive"
    fixed_timestep: float = 999.0
    spatial_timestep: bool = False
    t_min: int = 1
    t_max: int = 999
    unet_input: str = "mu"
    input_scaling: str = "none"
    predictor_latent: str = "z_l"
    predictor_hidden: int = 32
    predictor_blocks: int = 6
    unet_lora_rank: int = 32
    unet_lora_alpha: float = 8.0
    unet_lora_targets: tuple[str, ...] = UNET_LORA_TARGETS
    vae_lora_rank: int = 16
    vae_lora_alpha: float = 8.0
    vae_lora_regex: str = VAE_LORA_REGEX
    lora_merged: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        choices = {
            "timestep_mode": ("adaptive", "fixed"),
            "unet_input": ("mu", "z_l"),
            "input_scaling": ("none", "sqrt_alpha"),
            "predictor_latent": ("z_l", "z_h"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        self.unet_lora_targets = tuple(self.unet_lora_targets)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown teacher config keys: {unknown}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["unet_lora_targets"] = list(self.unet_lora_targets)
        return d


@dataclass
class TeacherOutput:
    """``image`` (B, 3, H, W) in about [-1, 1]; ``features``: the 5 distillation maps
    (d0 320@H/16, d1 pre-downsampler 640@H/16, up_blocks[1] 1280@H/16, [2] 640@H/8, [3] 320@H/8
    for SD widths); ``timestep``: (B,) or (B, 1, h, w) float; ``log_sigma``: the (B, 1, h, w) map
    of predicted log noise level; ``sigma`` and ``alpha_bar`` as used (per image or per pixel)."""

    image: torch.Tensor
    features: list[torch.Tensor]
    timestep: torch.Tensor
    log_sigma: torch.Tensor
    sigma: torch.Tensor
    alpha_bar: torch.Tensor
    latent: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor | None = None


# ------------------------------------------------------------------------------------------------
# Folder loading
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Spatial timestep: ResNets that accept a (B, C, h, w) time embedding
# ------------------------------------------------------------------------------------------------


def _enable_spatial_time(
    unet: UNet2DConditionModel, spatial_emb: Callable[[], torch.Tensor | None]
):
    """Per-pixel timesteps through forward hooks, without replacing diffusers' forward: while
    ``spatial_emb()`` returns a (B, D, h, w) embedding, the UNet's time embedding is zero, so each
    ResNet adds ``time_emb_proj(0)``; a pre-hook on its ``norm2`` (whose input is ``h + temb``)
    adds ``time_emb_proj(SiLU(pool(emb))) - time_emb_proj(0)`` per pixel instead."""

    def hook(block: ResnetBlock2D):
        def pre_norm2(_module, args):
            emb = spatial_emb()
            if emb is None:
                return None
            h = args[0]
            t = F.adaptive_avg_pool2d(emb, h.shape[-2:]).to(h.dtype)
            proj = block.time_emb_proj
            per_pixel = proj(block.nonlinearity(t).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            stock = proj(t.new_zeros(1, t.shape[1]))[:, :, None, None]
            return (h + per_pixel - stock, *args[1:])

        return pre_norm2

    for name, m in unet.named_modules():
        if isinstance(m, ResnetBlock2D):
            if m.upsample is not None or m.downsample is not None or m.skip_time_act:
                raise ValueError(f"{name}: spatial timesteps need plain SD ResNets")
            if m.time_embedding_norm != "default" or m.time_emb_proj is None:
                raise ValueError(f"{name}: spatial timesteps need additive time embeddings")
            m.norm2.register_forward_pre_hook(hook(m))


# ------------------------------------------------------------------------------------------------
# LoRA merge
# ------------------------------------------------------------------------------------------------


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of ``model`` with every LoRA delta added to its base weight and peft's
    ``base_layer``/``lora_*`` keys removed: loads strictly into the plain model class."""
    deltas = {
        name: m.get_delta_weight(adapter)
        for name, m in model.named_modules()
        if isinstance(m, BaseTunerLayer)
        for adapter in m.active_adapters
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value.detach().clone()
    for name, delta in deltas.items():
        w = out[f"{name}.weight"]
        out[f"{name}.weight"] = (w.float() + delta.float()).to(w.dtype)
    return out


def _merged_copy(model: UNet2DConditionModel | AutoencoderKL):
    plain = type(model).from_config(model.config)
    plain.load_state_dict(merged_state_dict(model), strict=True)
    return plain


# ------------------------------------------------------------------------------------------------
# The teacher
# ------------------------------------------------------------------------------------------------


class SlimDiffSRTeacher(nn.Module):
    """SD-2.x UNet + VAE with LoRA, U (frozen) and P; see the module docstring.

    Build with :meth:`from_pretrained` (local diffusers folder) or directly from components.
    ``estimator`` is required in adaptive mode (frozen here; stage 0 trains it).
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        prompt_embeds: torch.Tensor,
        alphas_cumprod: torch.Tensor,
        config: TeacherConfig | None = None,
        estimator: UncertaintyEstimator | None = None,
    ) -> None:
        super().__init__()
        cfg = config or TeacherConfig()
        check_sd_shape(unet)
        if prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != unet.config.cross_attention_dim:
            raise ValueError(
                f"prompt_embeds {tuple(prompt_embeds.shape)} must be (1, L, "
                f"{unet.config.cross_attention_dim}) to match the UNet's cross_attention_dim"
            )
        adaptive = cfg.timestep_mode == "adaptive"
        if adaptive and estimator is None:
            raise ValueError("the adaptive teacher needs a trained UncertaintyEstimator (stage 0)")
        self.config = cfg
        self.sigmas = sigmas_from_alphas_cumprod(alphas_cumprod)  # float64 CPU, never cast
        self.log_sigma_range = log_sigma_bounds(self.sigmas, cfg.t_min, cfg.t_max)
        self.latent_scale = float(vae.config.scaling_factor)
        self.pad_multiple = 2 ** (len(vae.config.block_out_channels) - 1) * 2 ** (
            len(unet.config.block_out_channels) - 1
        )
        self.unet, self.vae = unet, vae
        self.unet.requires_grad_(False)
        self.vae.requires_grad_(False)
        if not cfg.lora_merged:
            self._add_lora(cfg)
        if cfg.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.estimator = estimator if adaptive else None  # the fixed-t ablation has no U
        self.predictor: NoiseLevelPredictor | None = None
        if adaptive:
            estimator.requires_grad_(False)
            estimator.eval()
            self.predictor = NoiseLevelPredictor(
                logvar_channels=estimator.config.logvar_channels,
                latent_channels=unet.config.in_channels,
                hidden_channels=cfg.predictor_hidden,
                num_blocks=cfg.predictor_blocks,
                log_sigma_min=self.log_sigma_range[0],
                log_sigma_max=self.log_sigma_range[1],
            )
        self.register_buffer("prompt_embeds", prompt_embeds.detach().clone(), persistent=False)
        self._features: dict[str, torch.Tensor] = {}
        self._spatial_emb: torch.Tensor | None = None
        self._register_hooks()
        if cfg.spatial_timestep:
            _enable_spatial_time(self.unet, lambda: self._spatial_emb)

    def _add_lora(self, cfg: TeacherConfig) -> None:
        """peft LoRA: UNet (rank 32, section 4.1 targets), VAE decoder (rank 16, regex)."""
        self.unet.add_adapter(
            LoraConfig(
                r=cfg.unet_lora_rank,
                lora_alpha=cfg.unet_lora_alpha,
                init_lora_weights="gaussian",
                target_modules=list(cfg.unet_lora_targets),
            )
        )
        self.vae.add_adapter(
            LoraConfig(
                r=cfg.vae_lora_rank,
                lora_alpha=cfg.vae_lora_alpha,
                init_lora_weights="gaussian",
                target_modules=cfg.vae_lora_regex,
            )
        )
        for p in [*self.unet.parameters(), *self.vae.parameters()]:
            if p.requires_grad:  # peft creates LoRA in the base dtype; train it in float32
                p.data = p.data.float()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        config: TeacherConfig | None = None,
        estimator: UncertaintyEstimator | str | Path | None = None,
        prompt_embeds: torch.Tensor | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> SlimDiffSRTeacher:
        """Load ``unet/``, ``vae/``, ``scheduler/`` and the empty-prompt embedding from a local
        diffusers folder (no download); ``estimator`` is a module or a ``save_pretrained`` folder.
        ``torch_dtype`` casts the frozen base weights only (LoRA and P stay float32)."""
        folder = Path(folder)
        require(folder, "model folder")
        require_weights(folder, "unet")
        require_weights(folder, "vae")
        alphas_cumprod = load_alphas_cumprod(folder)
        if prompt_embeds is None:
            prompt_embeds = load_prompt_embeds(folder)
        kw: dict[str, Any] = {"local_files_only": True}
        if torch_dtype is not None:
            kw["torch_dtype"] = torch_dtype
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **kw)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **kw)
        if isinstance(estimator, (str, Path)):
            require(Path(estimator) / "config.json", "uncertainty estimator")
            estimator = UncertaintyEstimator.from_pretrained(estimator, local_files_only=True)
        return cls(unet, vae, prompt_embeds, alphas_cumprod, config, estimator)

    def _register_hooks(self) -> None:
        down, up = self.unet.down_blocks, self.unet.up_blocks

        def keep(name: str, pre: bool = False):
            def hook(module, args, output=None):
                value = args[0] if pre else output
                self._features[name] = value[0] if isinstance(value, tuple) else value

            return hook

        down[0].register_forward_hook(keep("d0"))
        down[1].downsamplers[0].register_forward_pre_hook(keep("d1", pre=True))
        for i in (1, 2, 3):
            up[i].register_forward_hook(keep(f"up{i}"))
        self.unet.time_embedding.register_forward_hook(  # zero while per-pixel t is on
            lambda m, a, out: out.new_zeros(out.shape) if self._spatial_emb is not None else None
        )

    # -- parameters -------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """LoRA (UNet, VAE decoder) and predictor weights: what a checkpoint must hold."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`trainable_state_dict`; the key sets must match exactly."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(
                f"trainable keys differ: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        with torch.no_grad():
            for n, p in params.items():
                if p.shape != state[n].shape:
                    raise ValueError(f"{n}: shape {tuple(state[n].shape)} != {tuple(p.shape)}")
                p.copy_(state[n])

    def train(self, mode: bool = True) -> SlimDiffSRTeacher:
        super().train(mode)
        if self.estimator is not None:
            self.estimator.eval()  # frozen
        return self

    # -- forward ------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.vae.encoder.conv_in.weight.dtype
        with torch.no_grad():
            return self.vae.encode(x.to(dtype)).latent_dist.mean * self.latent_scale

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        m = self.pad_multiple
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            mode = "reflect" if ph < H and pw < W else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x

    def _noise_level(self, z_l: torch.Tensor, hr: torch.Tensor | None):
        """(mean, logvar, log_sigma map, sigma used, t) for the configured mode."""
        cfg = self.config
        b, _, h, w = z_l.shape
        if cfg.timestep_mode == "fixed":
            t = torch.full((b,), float(cfg.fixed_timestep), device=z_l.device)
            sigma = timestep_to_sigma(t, self.sigmas)
            log_sigma = sigma.log().view(b, 1, 1, 1).expand(b, 1, h, w)
            if cfg.spatial_timestep:
                t, sigma = t.view(b, 1, 1, 1).expand(b, 1, h, w), log_sigma.exp()
            return z_l, None, log_sigma, sigma, t
        with torch.no_grad():
            u = self.estimator(z_l.to(self.estimator.blocks[0].conv1.weight.dtype))
        ref = z_l
        if cfg.predictor_latent == "z_h":
            if hr is None:
                raise ValueError("predictor_latent='z_h' needs the HR image: teacher(lr, hr=...)")
            ref = self._encode(self._pad(hr))
        p_dtype = self.predictor.conv_in.weight.dtype
        log_sigma = self.predictor(u.logvar.to(p_dtype), ref.to(p_dtype)).float()
        sigma_map = log_sigma.exp()
        sigma = sigma_map if cfg.spatial_timestep else per_image_sigma(sigma_map)
        return u.mean, u.logvar, log_sigma, sigma, sigma_to_timestep(sigma, self.sigmas)

    def _unet(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dtype = self.unet.conv_in.weight.dtype
        prompt = self.prompt_embeds.to(dtype).expand(x.shape[0], -1, -1)
        if t.ndim == 1:
            return self.unet(x.to(dtype), t, prompt).sample
        b, _, h, w = t.shape
        emb = self.unet.time_proj(t.reshape(-1)).to(dtype)
        emb = self.unet.time_embedding(emb).view(b, h, w, -1).permute(0, 3, 1, 2)
        self._spatial_emb = emb
        try:
            return self.unet(x.to(dtype), torch.zeros(b, device=x.device), prompt).sample
        finally:
            self._spatial_emb = None

    def forward(self, lr: torch.Tensor, hr: torch.Tensor | None = None) -> TeacherOutput:
        """LR (B, 3, h, w) in [-1, 1] -> :class:`TeacherOutput` with the SR image (B, 3, s h, s w)."""
        if lr.ndim != 4 or lr.shape[1] != self.vae.config.in_channels:
            raise ValueError(
                f"expected LR of shape (B, {self.vae.config.in_channels}, h, w), got {tuple(lr.shape)}"
            )
        cfg = self.config
        x = bicubic_upsample(lr, cfg.scale)
        H, W = x.shape[-2:]
        z_l = self._encode(self._pad(x))
        mean, logvar, log_sigma, sigma, t = self._noise_level(z_l, hr)
        abar = alpha_bar_from_sigma(sigma)
        sig4, abar4 = (
            (sigma.view(-1, 1, 1, 1), abar.view(-1, 1, 1, 1)) if sigma.ndim == 1 else (sigma, abar)
        )
        x_in = (mean if cfg.unet_input == "mu" else z_l).float()
        self._features = {}
        if cfg.input_scaling == "sqrt_alpha":
            eps = self._unet(abar4.sqrt() * x_in, t).float()
            z_hat = x_in - sig4 * eps
        else:
            eps = self._unet(x_in, t).float()
            z_hat = (x_in - (1 - abar4).sqrt() * eps) / abar4.sqrt()
        features = [self._features.pop(n) for n in FEATURE_NAMES]
        dec_dtype = self.vae.post_quant_conv.weight.dtype
        image = self.vae.decode((z_hat / self.latent_scale).to(dec_dtype)).sample
        return TeacherOutput(
            image=image[..., :H, :W],
            features=features,
            timestep=t,
            log_sigma=log_sigma,
            sigma=sigma,
            alpha_bar=abar,
            latent=z_hat,
            mean=mean,
            logvar=logvar,
        )

    # -- saving ----------------------------------------------------------------------------
    def save_trained(self, save_directory: str | Path) -> Path:
        """Write what training changed: ``teacher_config.json``, ``trainable.safetensors`` (LoRA +
        P) and ``estimator/``. Reload with :meth:`from_trained` and the same base folder."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / TRAINED_CONFIG).write_text(json.dumps(self.config.to_dict(), indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.trainable_state_dict().items()}
        save_file(state, str(out / TRAINED_WEIGHTS), metadata={"format": "slimdiffsr-teacher-1"})
        if self.estimator is not None:
            self.estimator.save_pretrained(out / ESTIMATOR_DIR, safe_serialization=True)
        return out

    @classmethod
    def from_trained(
        cls,
        trained_directory: str | Path,
        pretrained_folder: str | Path | None = None,
        **kwargs: Any,
    ) -> SlimDiffSRTeacher:
        """Load :meth:`save_trained` output on the base ``pretrained_folder``, or a complete
        :meth:`export_merged` folder (then ``pretrained_folder`` is None: the folder is its own base).
        """
        d = Path(trained_directory)
        cfg = TeacherConfig.from_dict(
            json.loads(require(d / TRAINED_CONFIG, "teacher config").read_text())
        )
        est = d / ESTIMATOR_DIR
        teacher = cls.from_pretrained(
            pretrained_folder if pretrained_folder is not None else d,
            cfg,
            estimator=est if est.is_dir() else None,
            **kwargs,
        )
        teacher.load_trainable_state_dict(
            load_file(str(require(d / TRAINED_WEIGHTS, "teacher weights")))
        )
        return teacher

    # -- export ----------------------------------------------------------------------------
    def merged_unet(self) -> UNet2DConditionModel:
        """A plain UNet2DConditionModel with the LoRA merged into its weights."""
        return _merged_copy(self.unet)

    def merged_vae(self) -> AutoencoderKL:
        """A plain AutoencoderKL with the decoder LoRA merged."""
        return _merged_copy(self.vae)

    def export_merged(self, save_directory: str | Path) -> Path:
        """Write a complete, self-contained teacher folder with the LoRA merged: ``unet/``,
        ``vae/``, ``scheduler/``, the prompt embedding (a plain diffusers folder the student
        builder can start from) plus ``teacher_config.json`` (``lora_merged``), ``estimator/`` and
        ``teacher_trainable.safetensors`` (P only). Load with ``from_trained(folder)``."""
        out = Path(save_directory)
        self.merged_unet().save_pretrained(out / "unet", safe_serialization=True)
        self.merged_vae().save_pretrained(out / "vae", safe_serialization=True)
        save_scheduler(out, self.sigmas)
        save_file(
            {"prompt_embeds": self.prompt_embeds.detach().cpu().contiguous()},
            str(out / PROMPT_FILE),
        )
        cfg = TeacherConfig.from_dict({**self.config.to_dict(), "lora_merged": True})
        (out / TRAINED_CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2))
        state = {}
        if self.predictor is not None:
            state = {
                f"predictor.{k}": v.detach().cpu().contiguous()
                for k, v in self.predictor.state_dict().items()
            }
        save_file(state, str(out / TRAINED_WEIGHTS), metadata={"format": "slimdiffsr-teacher-1"})
        if self.estimator is not None:
            self.estimator.save_pretrained(out / ESTIMATOR_DIR, safe_serialization=True)
        return out


__all__ = [
    "FEATURE_NAMES",
    "PROMPT_FILE",
    "TRAINED_CONFIG",
    "TRAINED_WEIGHTS",
    "UNET_LORA_TARGETS",
    "VAE_LORA_REGEX",
    "SlimDiffSRTeacher",
    "TeacherConfig",
    "TeacherOutput",
    "check_sd_shape",
    "load_alphas_cumprod",
    "load_prompt_embeds",
    "merged_state_dict",
    "save_scheduler",
]
