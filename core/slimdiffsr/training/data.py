"""The training data stream every stage shares: deterministic, resumable crops and fixed pairs.

Crops are a pure function of ``(seed, epoch, index)`` (:class:`RasterPatchDataset.sample` or
:class:`SyntheticPatches.sample`), the sampler a pure function of the step, and the degradation of
a micro-batch is seeded by ``(seed, micro-batch, rank)``. A resumed run therefore sees exactly the
batches an uninterrupted one would, without replaying data, whatever the worker count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from slimdiffsr.contract import ValueContract
from slimdiffsr.data.datasets import RasterPatchDataset, build_paired_val, load_split
from slimdiffsr.data.degradation import DegradationConfig, degrade
from slimdiffsr.training.config import TrainConfig


def seed_for(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class SyntheticPatches(Dataset):
    """Smooth random images in [0, 1] (tests, benchmarks); ``sample(index, epoch)`` is pure."""

    def __init__(self, crop_size: int, channels: int = 3, length: int = 64, seed: int = 0) -> None:
        self.crop_size, self.channels, self.length, self.seed = crop_size, channels, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.sample(index, 0)

    def sample(self, index: int, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed_for(self.seed, epoch, index))
        c, s = self.channels, self.crop_size
        low = torch.rand(1, c, max(2, s // 8), max(2, s // 8), generator=g)
        x = torch.nn.functional.interpolate(low, size=(s, s), mode="bicubic", align_corners=False)
        return (x[0] + 0.05 * torch.randn(c, s, s, generator=g)).clamp(0, 1)


class KeyedCrops(Dataset):
    """Adapter: key ``epoch * N + index`` -> the dataset's crop for ``(index, epoch)``."""

    def __init__(self, dataset: RasterPatchDataset | SyntheticPatches) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> torch.Tensor:
        n = len(self.dataset)
        return self.dataset.sample(key % n, key // n)


class StepSampler(Sampler[int]):
    """Endless keys for one rank: epoch-wise permutations of the dataset, cut into global batches.

    Global batch ``b`` holds positions ``b * world * per_rank .. +world * per_rank``; rank ``r``
    takes its contiguous share. ``start_batch`` skips batches without reading them (resume).
    """

    def __init__(
        self, n: int, per_rank: int, seed: int, rank: int = 0, world: int = 1, start_batch: int = 0
    ) -> None:
        self.n, self.per_rank, self.seed = n, per_rank, seed
        self.rank, self.world, self.start_batch = rank, world, start_batch
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (
                epoch,
                np.random.default_rng([self.seed, 7919, epoch]).permutation(self.n),
            )
        return self._perm[1]

    def __iter__(self) -> Iterator[int]:
        b = self.start_batch
        while True:
            base = (b * self.world + self.rank) * self.per_rank
            for j in range(self.per_rank):
                epoch, pos = divmod(base + j, self.n)
                yield int(epoch * self.n + self._permutation(epoch)[pos])
            b += 1


def train_and_val_sources(cfg: TrainConfig) -> tuple[Any, Any]:
    """The configured train and validation sources (a split ``.json`` supplies both)."""
    train, val = cfg.train_data, cfg.val_data
    if isinstance(train, str) and train.endswith(".json"):
        split = load_split(train)
        train = split.train
        if val is None:
            val = split.val
    return train, val


def value_contract(cfg: TrainConfig) -> ValueContract | None:
    return ValueContract.parse(cfg.value_contract) if cfg.value_contract else None


def build_train_set(cfg: TrainConfig) -> RasterPatchDataset | SyntheticPatches:
    """HR crops in [0, 1]: :class:`SyntheticPatches` or the configured rasters."""
    if cfg.synthetic_data:
        return SyntheticPatches(cfg.crop_size, cfg.channels, seed=cfg.seed)
    train, _ = train_and_val_sources(cfg)
    return RasterPatchDataset(
        train,
        crop_size=cfg.crop_size,
        bands=cfg.bands,
        hflip=cfg.augment != "none",
        rot90=cfg.augment == "dihedral",
        pad=cfg.pad_small_images,
        value_contract=value_contract(cfg),
        seed=cfg.seed,
    )


def build_val_pairs(cfg: TrainConfig) -> list[dict[str, Any]]:
    """Fixed (LR, HR) pairs in [0, 1] (``lr``, ``hr``, ``name``); empty when there is no
    validation source or ``val_max_images`` is 0. Each pair is degraded once with ``seed + k``."""
    if cfg.val_max_images == 0:
        return []
    deg = DegradationConfig.preset(cfg.degradation)
    if cfg.synthetic_data:
        base = SyntheticPatches(cfg.val_crop_size or cfg.crop_size, cfg.channels, seed=cfg.seed + 1)
        pairs = []
        for k in range(cfg.val_max_images or 4):
            hr = base.sample(k, 0)
            lr = degrade(hr[None], cfg.scale, deg, torch.Generator().manual_seed(cfg.seed + k))[0]
            pairs.append({"lr": lr, "hr": hr, "name": f"synthetic_{k:03d}"})
        return pairs
    _, val = train_and_val_sources(cfg)
    if val is None:
        return []
    return build_paired_val(
        val,
        cfg.scale,
        deg,
        seed=cfg.seed,
        crop_size=cfg.val_crop_size,
        bands=cfg.bands,
        value_contract=value_contract(cfg),
        max_images=cfg.val_max_images,
    ).pairs


def step_batches(
    dataset: RasterPatchDataset | SyntheticPatches,
    cfg: TrainConfig,
    rank: int,
    world: int,
    start_batch: int,
    pin_memory: bool = False,
) -> Iterator[torch.Tensor]:
    """Endless HR batches (B, C, crop, crop) in [0, 1] for this rank, from ``start_batch`` on."""
    sampler = StepSampler(len(dataset), cfg.train_batch_size, cfg.seed, rank, world, start_batch)
    loader = DataLoader(
        KeyedCrops(dataset),
        batch_size=cfg.train_batch_size,
        sampler=sampler,
        num_workers=cfg.dataloader_num_workers,
        pin_memory=pin_memory,
        persistent_workers=cfg.dataloader_num_workers > 0,
        # the iterator's worker seed from its own generator: starting (or resuming) the loader
        # must not advance the global RNG that augmentations draw from
        generator=torch.Generator().manual_seed(seed_for(cfg.seed, rank, start_batch)),
    )
    return iter(loader)


def degrade_batch(
    hr01: torch.Tensor, scale: int, deg: DegradationConfig, seed: int, micro: int, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """HR [0, 1] on its device -> (LR, HR) in the models' [-1, 1]; the degradation draw is a pure
    function of ``(seed, micro-batch, rank)``."""
    gen = torch.Generator(device=hr01.device).manual_seed(seed_for(seed, micro, rank))
    with torch.no_grad():
        lr01 = degrade(hr01, scale, deg, gen)
    return lr01 * 2 - 1, hr01 * 2 - 1


__all__ = [
    "KeyedCrops",
    "StepSampler",
    "SyntheticPatches",
    "build_train_set",
    "build_val_pairs",
    "degrade_batch",
    "seed_for",
    "step_batches",
    "train_and_val_sources",
    "value_contract",
]
