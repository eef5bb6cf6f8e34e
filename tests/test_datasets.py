"""Datasets: crops of any dtype in [0, 1], padding, bands, determinism, splits, loud errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from slimdiffsr.contract import ValueContract
from slimdiffsr.data.datasets import (
    DatasetError,
    RasterPatchDataset,
    build_paired_val,
    find_images,
    load_split,
    make_split,
    pad_reflect101,
    write_split,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPLIT = Path(__file__).resolve().parents[1] / "training" / "splits" / "shared_data.json"


def _write_tif(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    import rasterio
    from affine import Affine

    bands, h, w = data.shape
    profile = {
        "driver": "GTiff",
        "height": h,
        "width": w,
        "count": bands,
        "dtype": data.dtype.name,
        "crs": "EPSG:32633",
        "transform": Affine(1.0, 0.0, 500000.0, 0.0, -1.0, 4000000.0),
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    _write_tif(d / "a.tif", rng.integers(0, 256, (3, 40, 50), dtype=np.uint8))
    _write_tif(d / "b.tif", rng.integers(0, 10001, (3, 48, 36), dtype=np.uint16))
    _write_tif(d / "c.tif", rng.random((3, 20, 24), dtype=np.float32))
    (d / "notes.txt").write_text("not an image")
    return d


def test_crops_any_dtype_in_unit_range(folder: Path) -> None:
    ds = RasterPatchDataset(folder, crop_size=32, seed=1)
    assert len(ds) == 3 and ds.channels == 3
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_uint16_uses_value_contract(tmp_path: Path) -> None:
    data = np.full((1, 16, 16), 5000, dtype=np.uint16)
    f = _write_tif(tmp_path / "r.tif", data)
    assert torch.allclose(RasterPatchDataset(f, crop_size=8)[0], torch.tensor(0.5))
    custom = ValueContract("fixed", (0.0,), (20000.0,))
    assert torch.allclose(
        RasterPatchDataset(f, crop_size=8, value_contract=custom)[0], torch.tensor(0.25)
    )


def test_crops_are_deterministic_per_seed_epoch_index(folder: Path) -> None:
    a = RasterPatchDataset(folder, crop_size=16, seed=3)
    b = RasterPatchDataset(folder, crop_size=16, seed=3)
    assert torch.equal(a[1], b[1])
    a.set_epoch(1)
    assert not torch.equal(a[1], b[1])
    assert torch.equal(a[1], b.sample(1, epoch=1))


def test_dihedral_augmentation_rotates_the_same_crops(folder: Path) -> None:
    """rot90 adds a rotation after the flip draw: the crop position and flip stay those of the
    plain dataset (so the hflip-only stream is unchanged), and every crop is one of the eight
    symmetries of it, all four rotations turning up."""
    plain = RasterPatchDataset(folder, crop_size=16, seed=5)
    turned = RasterPatchDataset(folder, crop_size=16, seed=5, rot90=True)
    ks = set()
    for i in range(len(plain)):
        for epoch in range(6):
            a, b = plain.sample(i, epoch).numpy(), turned.sample(i, epoch).numpy()
            k = [k for k in range(4) if np.array_equal(np.rot90(a, k, axes=(1, 2)), b)]
            assert k, f"crop {i}/{epoch} is not a rotation of the plain crop"
            ks.add(k[0])
    assert ks == {0, 1, 2, 3}
    from slimdiffsr.training.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(augment="rot45").validate()


def test_small_images_are_reflect101_padded(folder: Path) -> None:
    ds = RasterPatchDataset(folder, crop_size=30, hflip=False)
    assert ds.infos[2].path.name == "c.tif"  # 20 x 24
    x = ds[2].numpy()
    assert x.shape == (3, 30, 30)
    # reflect-101: the row after the last real row mirrors the row before it
    assert np.allclose(x[:, 20], x[:, 18])
    p = pad_reflect101(np.tile(np.arange(4, dtype=np.float32), (1, 4, 1)), 7)
    assert p[0, 0].tolist() == [0, 1, 2, 3, 2, 1, 0]


def test_crop_larger_than_image_without_padding_fails(folder: Path) -> None:
    with pytest.raises(DatasetError, match="larger than"):
        RasterPatchDataset(folder, crop_size=32, pad=False)
    with pytest.raises(DatasetError, match="larger than every image"):
        RasterPatchDataset(folder, crop_size=64)


def test_no_usable_images_and_bad_sources(tmp_path: Path) -> None:
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    with pytest.raises(DatasetError, match="no usable images"):
        RasterPatchDataset(tmp_path, crop_size=8)
    with pytest.raises(DatasetError, match="does not exist"):
        find_images(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        find_images(empty)


def test_band_selection_and_mixed_band_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _write_tif(tmp_path / "rgb.tif", rng.integers(1, 256, (3, 16, 16), dtype=np.uint8))
    _write_tif(tmp_path / "rgbn.tif", rng.integers(1, 256, (4, 16, 16), dtype=np.uint8))
    with pytest.raises(DatasetError, match="band counts"):
        RasterPatchDataset(tmp_path, crop_size=8)
    ds = RasterPatchDataset(tmp_path, crop_size=8, bands=[3, 1])
    assert ds[0].shape == (2, 8, 8)
    with pytest.raises(DatasetError, match="out of range"):
        RasterPatchDataset(tmp_path, crop_size=8, bands=[4])


def test_list_file_glob_and_split_round_trip(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("# training files\nimgs/a.tif\nimgs/b.tif\n")
    assert [p.name for p in find_images(tmp_path / "list.txt")] == ["a.tif", "b.tif"]
    assert len(find_images(str(folder / "*.tif"))) == 3
    files = find_images(folder)
    s1, s2 = make_split(files, 0.34, seed=5), make_split(files, 0.34, seed=5)
    assert s1 == s2 and len(s1.val) == 1 and set(s1.train).isdisjoint(s1.val)
    by_rule = make_split(files, val_patterns=["*/c.tif"])
    assert [p.name for p in by_rule.val] == ["c.tif"]
    path = write_split(tmp_path / "splits" / "s.json", s1, root=tmp_path)
    loaded = load_split(path)
    assert loaded.train == s1.train and loaded.val == s1.val
    assert RasterPatchDataset(path, crop_size=8).infos[0].path in s1.train
    with pytest.raises(DatasetError, match="not found"):
        load_split(tmp_path / "nope.json")


def test_paired_val_is_fixed(folder: Path) -> None:
    v1 = build_paired_val(folder, 4, seed=2, crop_size=16)
    v2 = build_paired_val(folder, 4, seed=2, crop_size=16)
    assert len(v1) == 3
    assert v1[0]["lr"].shape == (3, 4, 4) and v1[0]["hr"].shape == (3, 16, 16)
    assert all(torch.equal(a["lr"], b["lr"]) for a, b in zip(v1.pairs, v2.pairs))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
def test_shipped_split_matches_the_data_readme() -> None:
    split = load_split(SPLIT)
    assert all(p.is_file() for p in split.train + split.val)
    val_names = {p.parent.name for p in split.val}
    assert val_names == {"TEAK", "naip", "landsat8"}
    assert not any("TEAK" in p.as_posix() for p in split.train)
    # landsat8: training tiles and the held-back validation strip never overlap (rows 0-1599 vs
    # 1604-1859 of the scene)
    import rasterio

    def rows(p: Path) -> tuple[float, float]:
        with rasterio.open(p) as src:
            return src.bounds.bottom, src.bounds.top

    l8_train = [rows(p) for p in split.train if p.parent.name == "landsat8"]
    l8_val = [rows(p) for p in split.val if p.parent.name == "landsat8"]
    assert len(l8_train) >= 10 and len(l8_val) == 7
    assert min(b for b, _ in l8_train) > max(t for _, t in l8_val)
    assert {p.name[-12:-8] for p in split.val if p.parent.name == "naip"} == {"2019", "2020"}
