"""The one-step teacher (method.md section 4), its discriminator and its loss terms.

Every teacher is loaded from a tiny SD-shaped diffusers folder (same block types as SD-2.x, small
widths) written with ``save_pretrained`` and read back through the real ``from_pretrained``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import LoraLayer

from slimdiffsr.losses.adversarial import discriminator_loss, generator_loss
from slimdiffsr.losses.tv import tv_loss
from slimdiffsr.models.discriminator import (
    DinoDiscriminator,
    VisionTransformer,
    diff_augment,
    load_dino_weights,
)
from slimdiffsr.models.teacher import PROMPT_FILE, SlimDiffSRTeacher, TeacherConfig
from slimdiffsr.models.timestep import per_image_sigma, sigma_to_timestep
from slimdiffsr.testing import build_tiny_teacher, make_sd_folder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("teacher")
    make_sd_folder(d / "tiny-sd", "tiny")
    return d


@pytest.fixture(scope="module")
def teacher(tiny_dir) -> SlimDiffSRTeacher:
    return build_tiny_teacher(tiny_dir)


@pytest.fixture(scope="module")
def perturbed(tiny_dir) -> SlimDiffSRTeacher:
    """A teacher whose LoRA and predictor are non-trivial (saving and merging must keep them)."""
    t = build_tiny_teacher(tiny_dir, seed=5)
    _perturb_lora(t)
    with torch.no_grad():
        t.predictor.conv_out.weight.normal_(0, 0.01)
    return t


def _lr(b: int = 2, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


def _perturb_lora(model: torch.nn.Module, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


# ------------------------------------------------------------------------------------------------
# Construction
# ------------------------------------------------------------------------------------------------


def test_only_lora_and_predictor_train(teacher) -> None:
    trainable = [n for n, p in teacher.named_parameters() if p.requires_grad]
    assert trainable
    for n in trainable:
        assert ".lora_" in n or n.startswith("predictor."), n
    assert any(n.startswith("predictor.") for n in trainable)
    assert not any(p.requires_grad for p in teacher.estimator.parameters())
    assert not any(p.requires_grad for p in teacher.vae.encoder.parameters())
    assert set(teacher.trainable_state_dict()) == set(trainable)


def test_lora_ranks_and_targets(teacher) -> None:
    unet = dict(teacher.unet.named_modules())
    for name in (
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0",
        "down_blocks.0.attentions.0.proj_in",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2",
        "down_blocks.0.resnets.0.conv1",
        "down_blocks.1.resnets.0.conv_shortcut",
        "down_blocks.0.downsamplers.0.conv",
        "conv_out",
    ):
        m = unet[name]
        assert isinstance(m, LoraLayer), name
        assert m.r["default"] == 32 and m.scaling["default"] == pytest.approx(8 / 32)
    assert not isinstance(unet["conv_in"], LoraLayer)
    assert not isinstance(unet["time_embedding.linear_1"], LoraLayer)
    vae = dict(teacher.vae.named_modules())
    lora_vae = [n for n, m in vae.items() if isinstance(m, LoraLayer)]
    assert lora_vae and all(n.startswith("decoder.") for n in lora_vae)
    assert "decoder.mid_block.attentions.0.to_q" in lora_vae
    assert "decoder.conv_out" in lora_vae
    assert vae["decoder.conv_in"].r["default"] == 16


def test_missing_files_fail_with_names(tmp_path, tiny_dir) -> None:
    with pytest.raises(FileNotFoundError, match="model folder"):
        SlimDiffSRTeacher.from_pretrained(tmp_path / "nowhere")
    src = tiny_dir / "tiny-sd"
    broken = tmp_path / "broken"
    for sub in ("unet", "vae", "scheduler"):
        (broken / sub).mkdir(parents=True)
        for f in (src / sub).iterdir():
            (broken / sub / f.name).write_bytes(f.read_bytes())
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="diffusion_pytorch_model.safetensors"):
        SlimDiffSRTeacher.from_pretrained(broken, TeacherConfig(timestep_mode="fixed"))
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(
        (src / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    )
    with pytest.raises(FileNotFoundError, match=PROMPT_FILE):
        SlimDiffSRTeacher.from_pretrained(broken, TeacherConfig(timestep_mode="fixed"))
    cfg = json.loads((broken / "scheduler" / "scheduler_config.json").read_text())
    cfg["prediction_type"] = "v_prediction"
    (broken / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="v_prediction"):
        SlimDiffSRTeacher.from_pretrained(broken, TeacherConfig(timestep_mode="fixed"))


def test_adaptive_needs_estimator_and_config_is_checked(tiny_dir) -> None:
    with pytest.raises(ValueError, match="UncertaintyEstimator"):
        SlimDiffSRTeacher.from_pretrained(tiny_dir / "tiny-sd", TeacherConfig())
    with pytest.raises(ValueError, match="timestep_mode"):
        TeacherConfig(timestep_mode="sometimes")
    with pytest.raises(ValueError, match="unknown teacher config keys"):
        TeacherConfig.from_dict({"rank": 4})


def test_non_sd_unet_is_refused() -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from slimdiffsr.testing import TINY_UNET, TINY_VAE

    cfg = {**TINY_UNET, "down_block_types": ("DownBlock2D",) * 4}
    with pytest.raises(ValueError, match="not SD-shaped"):
        SlimDiffSRTeacher(
            UNet2DConditionModel(**cfg),
            AutoencoderKL(**TINY_VAE),
            torch.zeros(1, 77, 32),
            torch.linspace(0.99, 0.01, 1000).double(),
            TeacherConfig(timestep_mode="fixed"),
        )


# ------------------------------------------------------------------------------------------------
# Forward
# ------------------------------------------------------------------------------------------------


def test_forward_shapes_and_features(teacher) -> None:
    with torch.no_grad():
        out = teacher(_lr())
    assert out.image.shape == (2, 3, 64, 64)
    H = 64
    shapes = [tuple(f.shape) for f in out.features]
    assert shapes == [
        (2, 32, H // 16, H // 16),  # d0 output (after its downsampler)
        (2, 64, H // 16, H // 16),  # d1 before its downsampler
        (2, 64, H // 16, H // 16),  # up_blocks[1]
        (2, 64, H // 8, H // 8),  # up_blocks[2]
        (2, 32, H // 8, H // 8),  # up_blocks[3]
    ]
    assert out.timestep.shape == (2,) and out.timestep.dtype == torch.float32
    assert bool(((out.timestep >= 1) & (out.timestep <= 999)).all())
    assert out.log_sigma.shape == (2, 1, 8, 8)
    assert torch.isfinite(out.image).all()


def test_odd_sizes_are_padded_and_cropped(teacher) -> None:
    with torch.no_grad():
        out = teacher(_lr(1, 20, 12))
    assert out.image.shape == (1, 3, 80, 48)
    with pytest.raises(ValueError, match="expected LR"):
        teacher(torch.zeros(1, 4, 16, 16))


def test_one_step_formula_at_init(teacher) -> None:
    """With LoRA B = 0 and P's last conv = 0 the output is the plain SD one-step prediction."""
    lr = _lr(1)
    with torch.no_grad():
        out = teacher(lr)
        x = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        z_l = teacher.vae.encode(x).latent_dist.mean * 0.18215
        u = teacher.estimator(z_l)
        sigma = per_image_sigma(
            torch.exp(0.5 * u.logvar).clamp(*map(math.exp, teacher.log_sigma_range))
        )
        t = sigma_to_timestep(sigma, teacher.sigmas)
        abar = 1 / (1 + sigma**2)
        eps = teacher.unet(u.mean, t, teacher.prompt_embeds).sample
        z = (u.mean - (1 - abar).sqrt() * eps) / abar.sqrt()
        img = teacher.vae.decode(z / 0.18215).sample
    torch.testing.assert_close(out.timestep, t)
    torch.testing.assert_close(out.image, img, atol=1e-5, rtol=1e-5)


def test_base_dtype_keeps_lora_float32(tiny_dir) -> None:
    t = SlimDiffSRTeacher.from_pretrained(
        tiny_dir / "tiny-sd", TeacherConfig(timestep_mode="fixed"), torch_dtype=torch.bfloat16
    )
    assert t.unet.conv_in.weight.dtype == torch.bfloat16
    assert {p.dtype for p in t.parameters() if p.requires_grad} == {torch.float32}
    with torch.no_grad():
        assert torch.isfinite(t(_lr(1)).image.float()).all()


def test_runs_in_bfloat16(tiny_dir) -> None:
    """Stage 2 runs the frozen teacher in half precision; the schedule must stay float."""
    t = build_tiny_teacher(tiny_dir).to(torch.bfloat16)
    with torch.no_grad():
        out = t(_lr(1))
    assert out.image.dtype == torch.bfloat16 and torch.isfinite(out.image.float()).all()
    assert t.sigmas.dtype == torch.float64 and out.timestep.dtype == torch.float32
    assert out.features[0].dtype == torch.bfloat16


def test_float_timestep_reaches_the_embedding(teacher) -> None:
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        a = teacher._unet(x, torch.tensor([100.0]))
        b = teacher._unet(x, torch.tensor([100.5]))
        c = teacher._unet(x, torch.tensor([101.0]))
    assert (a - b).abs().max() > 1e-6 and (b - c).abs().max() > 1e-6


def test_gradients_reach_lora_and_predictor(tiny_dir) -> None:
    t = build_tiny_teacher(tiny_dir)
    _perturb_lora(t)  # so that lora_A receives gradient too
    out = t(_lr())
    (out.image.square().mean() + tv_loss(out.log_sigma.exp())).backward()
    grads = {n: p.grad for n, p in t.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["predictor.conv_out.weight"].abs().sum() > 0
    assert any(n.startswith("vae.") and g.abs().sum() > 0 for n, g in grads.items())


def test_fixed_timestep_variant(tiny_dir) -> None:
    t = build_tiny_teacher(tiny_dir, timestep_mode="fixed", fixed_timestep=999)
    assert t.predictor is None and t.estimator is None
    assert all(".lora_" in n for n, p in t.named_parameters() if p.requires_grad)
    with torch.no_grad():
        out = t(_lr())
    assert out.timestep.tolist() == [999.0, 999.0]
    assert out.log_sigma.exp().mean().item() == pytest.approx(14.6146, rel=1e-3)


def test_spatial_timestep_matches_scalar_when_constant(tiny_dir) -> None:
    """The per-pixel path (pooled 1x1 time projections) equals the stock path on a flat map."""
    scalar = build_tiny_teacher(tiny_dir, timestep_mode="fixed", fixed_timestep=420.5)
    spatial = build_tiny_teacher(
        tiny_dir, timestep_mode="fixed", fixed_timestep=420.5, spatial_timestep=True
    )
    spatial.load_trainable_state_dict(scalar.trainable_state_dict())
    with torch.no_grad():
        a, b = scalar(_lr(1)), spatial(_lr(1))
    assert b.timestep.shape == (1, 1, 8, 8)
    torch.testing.assert_close(a.image, b.image, atol=1e-4, rtol=1e-4)


def test_spatial_timestep_adaptive_trains_predictor(tiny_dir) -> None:
    t = build_tiny_teacher(tiny_dir, spatial_timestep=True)
    out = t(_lr(1))
    assert out.timestep.shape == out.log_sigma.shape == (1, 1, 8, 8)
    assert out.alpha_bar.shape == (1, 1, 8, 8)
    out.image.mean().backward()
    assert t.predictor.conv_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "options",
    [
        {"unet_input": "z_l"},
        {"input_scaling": "sqrt_alpha"},
        {"predictor_latent": "z_h"},
    ],
)
def test_options_run(tiny_dir, options) -> None:
    t = build_tiny_teacher(tiny_dir, **options)
    hr = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        out = t(_lr(1), hr=hr)
    assert torch.isfinite(out.image).all()
    if options.get("predictor_latent") == "z_h":
        with pytest.raises(ValueError, match="hr"):
            t(_lr(1))


# ------------------------------------------------------------------------------------------------
# Saving, merging
# ------------------------------------------------------------------------------------------------


def test_trained_round_trip(perturbed, tiny_dir, tmp_path) -> None:
    t = perturbed
    t.save_trained(tmp_path / "trained")
    u = SlimDiffSRTeacher.from_trained(tmp_path / "trained", tiny_dir / "tiny-sd")
    for k, v in t.trainable_state_dict().items():
        assert torch.equal(v, u.trainable_state_dict()[k]), k
    with torch.no_grad():
        torch.testing.assert_close(t(_lr(1)).image, u(_lr(1)).image, rtol=0, atol=0)
    with pytest.raises(KeyError, match="missing"):
        u.load_trainable_state_dict({})


def test_export_merged_equals_lora(perturbed, tmp_path) -> None:
    t = perturbed
    x, ts = torch.randn(1, 4, 8, 8), torch.tensor([250.0])
    prompt = t.prompt_embeds
    with torch.no_grad():
        merged = t.merged_unet()
        torch.testing.assert_close(
            merged(x, ts, prompt).sample, t.unet(x, ts, prompt).sample, atol=1e-4, rtol=1e-4
        )
        ref = t(_lr(1))
    folder = t.export_merged(tmp_path / "merged")
    m = SlimDiffSRTeacher.from_trained(folder)  # self-contained: its own base
    assert m.config.lora_merged and not any(isinstance(x, LoraLayer) for x in m.modules())
    assert set(m.trainable_state_dict()) == {f"predictor.{k}" for k in t.predictor.state_dict()}
    with torch.no_grad():
        out = m(_lr(1))
    torch.testing.assert_close(out.image, ref.image, atol=1e-3, rtol=1e-3)
    keys = set(type(merged).from_config(merged.config).state_dict())
    assert keys == set(merged.state_dict())


# ------------------------------------------------------------------------------------------------
# Discriminator and loss terms
# ------------------------------------------------------------------------------------------------


def test_discriminator_heads_and_frozen_backbone() -> None:
    torch.manual_seed(0)
    d = DinoDiscriminator.tiny()
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    logits = d(x)
    assert [tuple(v.shape) for v in logits] == [(2, 1, 1, 1), (2, 1, 1, 1), (2, 1)]
    assert not any(p.requires_grad for p in d.backbone.parameters())
    trainable = [n for n, p in d.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("patch_heads.", "cls_head.")) for n in trainable)
    assert all("parametrizations.weight" in n for n in trainable if n.endswith("original"))
    generator_loss(logits).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    d.train()
    assert not d.backbone.training
    assert not any(k.startswith("backbone.") for k in d.trainable_state_dict())


def test_vit_b16_geometry() -> None:
    d = DinoDiscriminator(img_size=224, embed_dim=64, num_heads=4, depth=12, head_channels=8)
    with torch.no_grad():
        logits = d(torch.zeros(1, 3, 256, 256))
    assert [tuple(v.shape) for v in logits] == [(1, 1, 4, 4), (1, 1, 4, 4), (1, 1)]
    assert d.backbone.grid == 14


def test_dino_weights_load_strictly(tmp_path) -> None:
    src = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2)
    state = {f"module.backbone.{k}": v for k, v in src.state_dict().items()}
    state["head.weight"] = torch.zeros(1)
    torch.save({"teacher": state}, tmp_path / "dino.pth")
    d = DinoDiscriminator.tiny(backbone_weights=tmp_path / "dino.pth")
    for k, v in src.state_dict().items():
        assert torch.equal(d.backbone.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_dino_weights(src, tmp_path / "nothing.pth")


def test_diff_augment_is_seeded_and_shape_preserving() -> None:
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    policy = ("color", "translation", "cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(1))
    b = diff_augment(x, policy, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    with pytest.raises(ValueError, match="does not exist"):
        diff_augment(x, ("rotate",))


def test_adversarial_losses() -> None:
    zero = [torch.zeros(2, 1, 3, 3), torch.zeros(2, 1)]
    ln2 = math.log(2)
    assert float(generator_loss(zero)) == pytest.approx(2 * ln2)  # BCE(0.5, any target) = ln 2
    assert float(discriminator_loss(zero, zero)) == pytest.approx(4 * ln2)
    big = [torch.full((1, 1), 20.0)]
    target = 0.8 * -math.log(torch.sigmoid(torch.tensor(20.0)).item()) + 0.2 * 20.0
    assert float(generator_loss(big)) == pytest.approx(target, rel=1e-4)
    with pytest.raises(ValueError, match="head"):
        generator_loss([])


def test_tv_loss() -> None:
    x = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    # vertical |2-0|, |4-1| -> 2.5; horizontal |1-0|, |4-2| -> 1.5
    assert float(tv_loss(x)) == pytest.approx(4.0)
    assert float(tv_loss(torch.ones(1, 1, 1, 1))) == 0.0
    with pytest.raises(ValueError):
        tv_loss(torch.zeros(3, 3))
