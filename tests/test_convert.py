"""Published checkpoint import: synthetic checkpoint from the manifest, strict, safe."""

from __future__ import annotations

import pytest
import torch

from slimdiffsr.models.card import ModelFileError
from slimdiffsr.models.convert import convert_checkpoint, main, published_layout


def synthetic_published(path, prefix: str = "module.") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sd = {
        prefix + k: torch.randn(*shape, generator=g) * 0.02
        for k, shape in published_layout().items()
    }
    torch.save(sd, path)
    return sd


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_convert_synthetic_published_checkpoint(tmp_path, prefix: str) -> None:
    import slimdiffsr

    src = tmp_path / "published.pkl"
    sd = synthetic_published(src, prefix)
    dst = convert_checkpoint(src, tmp_path / "paper.safetensors", scale=4)
    model = slimdiffsr.load_model(str(dst))
    own = model.state_dict()
    assert set(own) == {k[len(prefix) :] for k in sd}
    k = "unet.mid_block.mid_block.conv2.mlp.2.bias"
    assert torch.equal(own[k], sd[prefix + k])
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16) * 2 - 1).shape == (1, 3, 64, 64)


def test_wrong_checkpoint_is_rejected(tmp_path) -> None:
    src = tmp_path / "foreign.pkl"
    torch.save({"module.conv.weight": torch.zeros(3, 3)}, src)
    with pytest.raises(ModelFileError, match="not a SlimDiffSR student checkpoint"):
        convert_checkpoint(src, tmp_path / "x.safetensors")


class Evil:
    """Any non-tensor object: weights_only loading must refuse it."""


def test_pickled_objects_are_not_loaded(tmp_path) -> None:
    src = tmp_path / "evil.pkl"
    torch.save({"obj": Evil()}, src)
    with pytest.raises(ModelFileError, match="not a loadable torch checkpoint"):
        convert_checkpoint(src, tmp_path / "x.safetensors")


def test_cli_refuses_to_overwrite(tmp_path) -> None:
    src = tmp_path / "p.pkl"
    synthetic_published(src)
    dst = tmp_path / "out.safetensors"
    dst.write_text("keep me")
    with pytest.raises(ModelFileError, match="exists"):
        main([str(src), str(dst)])
    assert dst.read_text() == "keep me"
