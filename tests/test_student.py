"""The student: published layout key for key, presets, ablations, forward contract, files."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from slimdiffsr.models.convert import published_layout
from slimdiffsr.models.student import SlimDiffSRStudent

PAPER_PARAMS = 58_053_402


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def paper() -> SlimDiffSRStudent:
    torch.manual_seed(0)
    return SlimDiffSRStudent.from_preset("paper").eval()


def test_paper_layout_matches_published_keys(paper: SlimDiffSRStudent) -> None:
    layout = published_layout()
    ours = {k: list(v.shape) for k, v in paper.state_dict().items()}
    assert ours == layout
    assert n_params(paper) == PAPER_PARAMS


def test_paper_forward_shapes(paper: SlimDiffSRStudent) -> None:
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert paper(x).shape == (1, 3, 256, 256)
    m8 = SlimDiffSRStudent.from_preset("paper", scale=8).eval()
    with torch.no_grad():
        assert m8(x).shape == (1, 3, 512, 512)


def test_forward_is_network_on_bicubic(paper: SlimDiffSRStudent) -> None:
    """What the authors' network computes on bicubic(lr) when no padding is needed."""
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        ours = paper(lr)
        x = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        enc, dec = paper.vae.encoder.layers, paper.vae.decoder.layers
        ref = dec[1:](paper.merge_conv2(paper.unet(paper.merge_conv1(enc[:-1](x)))))
    assert torch.equal(ours, ref)


def test_padding_and_crop_any_size() -> None:
    m = SlimDiffSRStudent.from_preset("nano").eval()
    with torch.no_grad():
        y = m(torch.rand(2, 3, 13, 7) * 2 - 1)
    assert y.shape == (2, 3, 52, 28)


def test_nano_is_small_and_starts_at_bicubic() -> None:
    m = SlimDiffSRStudent.from_preset("nano").eval()
    assert n_params(m) <= 5_000_000
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(m(lr), F.interpolate(lr, scale_factor=4, mode="bicubic"), atol=1e-6)


@pytest.mark.parametrize(
    "flag,expected_m",
    [
        ("no_fsc", 99.46),
        ("no_dsc", 93.18),
        ("no_qgam", 66.52),
        ("uniform", 168.33),
        ("full_vae", 138.89),
        ("no_fusion", 57.68),
    ],
)
def test_ablation_parameter_counts(flag: str, expected_m: float) -> None:
    m = SlimDiffSRStudent.from_preset("paper", **{flag: True})
    assert n_params(m) / 1e6 == pytest.approx(expected_m, abs=0.005)


@pytest.mark.parametrize(
    "flag", ["no_fsc", "no_dsc", "no_qgam", "uniform", "full_vae", "no_fusion"]
)
def test_ablation_forward(flag: str) -> None:
    m = SlimDiffSRStudent.from_preset("nano", **{flag: True}).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 16, 16) * 2 - 1).shape == (1, 3, 64, 64)


def test_features_for_distillation() -> None:
    m = SlimDiffSRStudent.from_preset("nano").eval()
    with torch.no_grad():
        sr, feats = m.forward_features(torch.rand(1, 3, 32, 32) * 2 - 1)
    # d0 (C0 @ H/16), d1 (C1 @ H/16), mid (C2 @ H/16), up0 (C1 @ H/8), up1 (C0 @ H/8); H = 128
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 8, 8),
        (128, 8, 8),
        (256, 8, 8),
        (128, 16, 16),
        (64, 16, 16),
    ]
    assert sr.shape == (1, 3, 128, 128)


def test_save_load_roundtrip(tmp_path) -> None:
    import slimdiffsr
    from slimdiffsr.models.card import read_card

    torch.manual_seed(3)
    m = SlimDiffSRStudent.from_preset("nano", scale=4)
    with torch.no_grad():
        m.vae.decoder.layers[-1].weight.normal_()  # make it differ from bicubic
    path = m.save_model(tmp_path / "m.safetensors", license="CC0", bands=["red", "green", "blue"])
    card = read_card(path)
    assert card.scale == 4 and card.config["block_out_channels"] == [64, 128, 256, 256]
    loaded = slimdiffsr.load_model(str(path))
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(m.eval()(lr), loaded(lr))
    assert loaded.card.license == "CC0" and len(loaded.model_hash) == 16
    assert json.loads(card.to_json())["architecture"] == "student"


def test_unknown_card_keys_are_logged_with_the_file_name(tmp_path, caplog) -> None:
    """A card from a newer writer still loads; what this version ignores is said, per file."""
    from safetensors.torch import load_file, save_file

    from slimdiffsr.models.card import CARD_KEY, FORMAT_KEY, read_card

    m = SlimDiffSRStudent.from_preset("nano", scale=4)
    path = m.save_model(tmp_path / "m.safetensors")
    doc = json.loads(read_card(path).to_json()) | {"calibration": {"gain": 1.1}}
    newer = tmp_path / "newer.safetensors"
    save_file(load_file(str(path)), str(newer), {CARD_KEY: json.dumps(doc), FORMAT_KEY: "1"})
    with caplog.at_level("WARNING", logger="slimdiffsr.models.card"):
        card = read_card(newer)
    assert card.name == doc["name"] and not hasattr(card, "calibration")
    assert any(
        "newer.safetensors" in r.message and "calibration" in r.message for r in caplog.records
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="slimdiffsr.models.card"):
        read_card(path)
    assert not caplog.records  # a card this version wrote has no unknown keys


def test_init_from_tiny_sd_unet(tmp_path) -> None:
    """Retained modules copy pretrained weights through the real from_pretrained path."""
    from diffusers import UNet2DConditionModel

    cfg = dict(
        block_out_channels=(64, 128, 256, 256),
        layers_per_block=2,
        cross_attention_dim=32,
        attention_head_dim=(1, 2, 4, 4),
        norm_num_groups=16,
        sample_size=16,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        use_linear_projection=True,
    )
    torch.manual_seed(0)
    UNet2DConditionModel(**cfg).save_pretrained(tmp_path / "unet")
    base = UNet2DConditionModel.from_pretrained(tmp_path / "unet").state_dict()
    m = SlimDiffSRStudent.from_sd_pretrained(tmp_path / "unet", preset="nano", ff_mult=4)
    sd = m.unet.state_dict()
    assert torch.equal(
        sd["mid_block.mid_block.norm1.weight"], base["down_blocks.2.resnets.0.norm1.weight"]
    )
    assert torch.equal(
        sd["up_blocks.0.resnets.0.conv_shortcut.weight"],
        base["up_blocks.2.resnets.0.conv_shortcut.weight"],
    )
    assert torch.equal(
        sd["down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"],
        base["down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"],
    )
    # the ablation keeps the pretrained 3x3 conv1
    m2 = SlimDiffSRStudent.from_sd_pretrained(
        tmp_path / "unet", preset="nano", ff_mult=4, no_fsc=True
    )
    assert torch.equal(
        m2.unet.state_dict()["down_blocks.1.resnets.0.conv1.weight"],
        base["down_blocks.1.resnets.0.conv1.weight"],
    )


def test_missing_sd_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        SlimDiffSRStudent.from_sd_pretrained(tmp_path / "nope")
