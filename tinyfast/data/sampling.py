"""Training data that a restarted or distributed run sees exactly as an uninterrupted single process would.

The order of the items is a pure function of (seed, epoch) and every item is drawn with RNGs seeded by
(seed, epoch, index): neither depends on the process, its DataLoader workers or what ran before, so a run
resumed in the middle of an epoch skips exactly the batches it had trained on and then continues with the
same data. An image that cannot be read during training comes back as a report naming the file instead of
killing the DataLoader; the training loop decides what to do with it.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tinyfast.data.errors import DataError
from tinyfast.data.transforms import Batch, collate


def derived_seed(*entropy: int) -> int:
    """A 64-bit seed mixed from non-negative integers (numpy's SeedSequence): nearby inputs give
    unrelated seeds."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])


class ItemKey(NamedTuple):
    """One item of a batch of `EpochBatchSampler`: its index, the seed of its RNGs (mixed from the run's
    seed, the epoch and the index) and the epoch."""

    index: int
    seed: int
    epoch: int = 0


class EpochBatchSampler(Sampler[list[ItemKey]]):
    """Batches of `ItemKey(index, item_seed, epoch)` for process `rank` of `world_size`.

    Each epoch permutes all items with a generator seeded by (seed, epoch), the same permutation in every
    process, and deals it round robin: process r takes positions r, r + world_size, ... So batch i of all
    processes together holds the items of batch i of one process with a batch world_size times larger.
    Items that would not fill a batch in every process are left out of the epoch, so that every process
    runs the same number of iterations. `set_epoch(epoch, start_batch)` selects the epoch and skips its
    first `start_batch` batches (a resumed run); `max_batches` > 0 cuts every epoch to that many batches.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        max_batches: int = 0,
    ):
        for name, value, low in (
            ("num_items", num_items, 0),
            ("batch_size", batch_size, 1),
            ("seed", seed, 0),
            ("world_size", world_size, 1),
            ("max_batches", max_batches, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"EpochBatchSampler: {name} must be an int >= {low}, got {value!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"EpochBatchSampler: rank must be in [0, {world_size}), got {rank!r}")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size, self.max_batches = rank, world_size, max_batches
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        full = self.num_items // self.world_size // self.batch_size
        return min(full, self.max_batches) if self.max_batches else full

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(
                f"EpochBatchSampler: start_batch must be in [0, {self.batches_per_epoch}], got {start_batch}"
            )
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self) -> Iterator[list[ItemKey]]:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_items, generator=generator)
        per_process = self.num_items // self.world_size
        mine = order[self.rank : self.world_size * per_process : self.world_size].tolist()
        for batch in range(self.start_batch, self.batches_per_epoch):
            indices = mine[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield [
                ItemKey(index, derived_seed(self.seed, self.epoch, index), self.epoch) for index in indices
            ]


class BadItem(NamedTuple):
    index: int
    message: str  # the DataError's, naming the file


@contextlib.contextmanager
def _seeded_rngs(seed: int):
    """torch, numpy and python RNGs seeded by `seed` inside, the caller's states restored afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class EpochDataset(Dataset):
    """A dataset whose items depend on the epoch too (Scale Match draws each image's scale anew every
    epoch): `SeededItems` reads them with `get(index, epoch)`; `dataset[index]` is the item of epoch 0."""

    def get(self, index: int, epoch: int):
        raise NotImplementedError

    def __getitem__(self, index: int):
        return self.get(index, 0)


class SeededItems(Dataset):
    """`dataset` for an `EpochBatchSampler`: item `ItemKey(index, seed, epoch)` (or `(index, seed)`, epoch
    0) is `dataset[index]` (`dataset.get(index, epoch)` for an `EpochDataset`) drawn with the RNGs seeded
    by `seed`, or a `BadItem` when reading it raises `DataError` (a file that went missing or does not
    decode)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, ...]):
        index, seed, epoch = ItemKey(*key)
        with _seeded_rngs(seed):
            try:
                if isinstance(self.dataset, EpochDataset):
                    return self.dataset.get(index, epoch)
                return self.dataset[index]
            except DataError as error:
                return BadItem(index, str(error))


class TrainingBatch(NamedTuple):
    batch: Batch | None  # None when no item of the batch could be read
    bad_items: list[str]  # why each left-out item could not be read


def collate_training(items: list, size_divisor: int = 32) -> TrainingBatch:
    good = [item for item in items if not isinstance(item, BadItem)]
    bad = [item.message for item in items if isinstance(item, BadItem)]
    return TrainingBatch(collate(good, size_divisor) if good else None, bad)


def make_training_loader(
    dataset: Dataset,
    sampler: EpochBatchSampler,
    *,
    num_workers: int = 2,
    size_divisor: int = 32,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader yielding `TrainingBatch`es in the sampler's order; workers stay alive between epochs.

    Its own generator (seeded from the sampler's seed) feeds the DataLoader's worker seeds, so iterating
    it leaves the process's global RNG alone."""
    return DataLoader(
        SeededItems(dataset),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=partial(collate_training, size_divisor=size_divisor),
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(derived_seed(sampler.seed)),
    )
