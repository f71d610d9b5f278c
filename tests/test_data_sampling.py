import random
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from tinyfast.data import DataError, TinyPersonDataset
from tinyfast.data.sampling import (
    BadItem,
    EpochBatchSampler,
    EpochDataset,
    ItemKey,
    SeededItems,
    collate_training,
    make_training_loader,
)


def epoch_batches(
    sampler: EpochBatchSampler, epoch: int, start_batch: int = 0
) -> list[list[ItemKey]]:
    sampler.set_epoch(epoch, start_batch)
    return list(sampler)


def test_processes_together_see_the_batches_of_one_process_with_the_total_batch():
    one = EpochBatchSampler(23, 4, seed=5)
    ranks = [EpochBatchSampler(23, 2, seed=5, rank=rank, world_size=2) for rank in range(2)]
    for epoch in (0, 3):
        single = epoch_batches(one, epoch)
        split = [epoch_batches(sampler, epoch) for sampler in ranks]
        assert len(single) == len(split[0]) == len(split[1]) == 5 == len(one)  # 23 // 4; the tail is dropped
        for index, batch in enumerate(single):
            assert sorted(batch) == sorted(split[0][index] + split[1][index])  # same items, same item seeds
        items = [key.index for batch in single for key in batch]
        assert len(set(items)) == len(items) and all(0 <= index < 23 for index in items)


def test_the_order_is_a_pure_function_of_seed_and_epoch_and_a_resumed_epoch_skips_what_was_done():
    sampler = EpochBatchSampler(40, 3, seed=1)
    first = epoch_batches(sampler, 2)
    assert epoch_batches(EpochBatchSampler(40, 3, seed=1), 2) == first  # a fresh process agrees
    assert epoch_batches(sampler, 3) != first
    assert epoch_batches(EpochBatchSampler(40, 3, seed=2), 2) != first
    assert epoch_batches(sampler, 2, start_batch=4) == first[4:]
    assert len(sampler) == len(first) - 4
    assert epoch_batches(sampler, 2, start_batch=len(first)) == []
    capped = EpochBatchSampler(40, 3, seed=1, max_batches=2)
    assert epoch_batches(capped, 2) == first[:2] and capped.batches_per_epoch == 2
    assert first[0][0][1] != first[0][1][1]  # every item its own seed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_items": -1}, "num_items"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -3}, "seed"),
        ({"world_size": 0}, "world_size"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"max_batches": True}, "max_batches"),
    ],
)
def test_sampler_arguments_are_checked(arguments, message):
    settings = {"num_items": 10, "batch_size": 2, "seed": 0, **arguments}
    with pytest.raises(ValueError, match=message):
        EpochBatchSampler(settings.pop("num_items"), settings.pop("batch_size"), **settings)
    with pytest.raises(ValueError, match="start_batch"):
        EpochBatchSampler(10, 2, seed=0).set_epoch(0, start_batch=6)


class RandomDraws(Dataset):
    """Each item draws from torch's, numpy's and python's RNGs; index 13 is an unreadable file."""

    def __len__(self):
        return 20

    def __getitem__(self, index):
        if index == 13:
            raise DataError("images/13.jpg: cannot decode image")
        return torch.rand(()).item(), float(np.random.rand()), random.random()


def test_seeded_items_depend_only_on_their_seed_and_leave_the_callers_rngs_alone():
    items = SeededItems(RandomDraws())
    torch.manual_seed(0)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    drawn = items[(3, 42)]
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    torch.rand(7), np.random.rand(7), random.random()  # whatever the process did before
    assert items[(3, 42)] == drawn
    assert items[(5, 42)] == drawn  # the seed decides, not the index
    assert all(a != b for a, b in zip(items[(3, 43)], drawn, strict=True))


class EpochDraws(EpochDataset):
    def __len__(self):
        return 4

    def get(self, index, epoch):
        return index, epoch, torch.rand(()).item()


def test_an_epoch_dataset_gets_the_epoch_of_the_key_and_its_items_their_seed():
    sampler = EpochBatchSampler(4, 2, seed=3)
    keys = [key for batch in epoch_batches(sampler, 5) for key in batch]
    assert all(key.epoch == 5 for key in keys) and sorted(key.index for key in keys) == [0, 1, 2, 3]
    items = SeededItems(EpochDraws())
    drawn = [items[key] for key in keys]
    assert [(index, epoch) for index, epoch, _ in drawn] == [(key.index, 5) for key in keys]
    assert drawn == [items[key] for key in keys]  # seeded per item
    assert items[(2, 7)] == (2, 0, items[ItemKey(2, 7, 0)][2])  # a plain (index, seed): epoch 0
    assert EpochDraws()[1][:2] == (1, 0)


def test_an_unreadable_item_becomes_a_report_and_leaves_its_batch():
    items = SeededItems(RandomDraws())
    bad = items[(13, 0)]
    assert bad == BadItem(13, "images/13.jpg: cannot decode image")
    image = torch.zeros(3, 40, 50)
    batch, reports = collate_training([(image, {"i": 0}), bad, (image, {"i": 2})])
    assert batch.images.shape == (2, 3, 64, 64) and [t["i"] for t in batch.targets] == [0, 2]
    assert reports == ["images/13.jpg: cannot decode image"]
    assert collate_training([bad]) == (None, [bad.message])


def test_training_loader_gives_the_same_batches_with_or_without_workers_and_reports_lost_files(
    tiny_synthetic_set, tmp_path
):
    images = tmp_path / "images"
    shutil.copytree(tiny_synthetic_set / "images", images)
    dataset = TinyPersonDataset(
        tiny_synthetic_set / "annotations" / "train.json", images, sub_size=(160, 128)
    )
    sampler = EpochBatchSampler(len(dataset), 3, seed=4, max_batches=3)
    sampler.set_epoch(1)
    plain = list(make_training_loader(dataset, sampler, num_workers=0))
    with_workers = list(make_training_loader(dataset, sampler, num_workers=2))
    flips = [t["flipped"] for loaded in plain for t in loaded.batch.targets]
    assert any(flips) and not all(flips)  # the items' own seeds decide the flips
    for ours, theirs in zip(plain, with_workers, strict=True):
        assert (
            torch.equal(ours.batch.images, theirs.batch.images) and ours.bad_items == theirs.bad_items == []
        )
        assert [t["flipped"] for t in ours.batch.targets] == [t["flipped"] for t in theirs.batch.targets]

    first = plain[0].batch.targets[0]["image_id"]
    lost = next(s.image.file_name for s in dataset.samples if s.source_id == first)
    (images / lost).unlink()  # the file disappears after the dataset checked it
    batch, reports = next(iter(make_training_loader(dataset, sampler, num_workers=1)))
    assert reports and all(lost in report for report in reports)
    assert batch is None or first not in [t["image_id"] for t in batch.targets]
