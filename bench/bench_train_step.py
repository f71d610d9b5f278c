"""One training step of each of our detectors against torchvision's model of the same family, same run.

A step is forward, losses, backward and an SGD step (momentum 0.9), on a batch of TinyPerson-like
640x512 sub-images (``bench/workload.py``'s tiny people in clusters, 100 per image, those of less
than 1 px dropped). Both sides are ResNet-50 FPN detectors trained from scratch (no weights; BatchNorm
trained and every stage trainable, as torchvision builds a model without weights) and see the same images
at the same size (torchvision's transform is set to keep them as they are; it normalises them itself).

- FCOS: our AdapFCOS (P2-P6, towers of 4 convs of 256 channels without GroupNorm, targets from
  ``tinyfast.ops.fcos_targets``) against ``torchvision.models.detection.fcos_resnet50_fpn`` (P3-P7, towers
  with GroupNorm). Adap FCOS's P2 level gives its head 4x the locations of torchvision's P3: most of its
  time is that, the price of seeing 2 px persons.
- RetinaNet: our AdapRetinaNet (P2-P6, 9 anchors a location, max-IoU assignment by
  ``tinyfast.ops.max_iou_assign``) against ``retinanet_resnet50_fpn`` (P3-P7); the same P2 price applies.
- FasterRCNN: our FasterFPN (P2-P6 RPN, 3 anchors a location; RoIAlign on P2-P5) against
  ``fasterrcnn_resnet50_fpn`` (the same levels).

Each pair runs in float32 and in bf16 (skipped where the device has no native bf16), bf16 as each side runs
best: autocast, weights and images channels last, for both (what ``train.amp = "bf16"`` does).

Adding a family is one ``Family`` row. With ``--benchmark-disable`` (CI) or ``TINYFAST_BENCH_QUICK=1`` one
step of each runs on a 160x128 image.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torchvision
from torch import nn

from bench.timing import DEVICES, best_time, needs_native_bf16, quick_mode, synchronized
from bench.workload import tiny_person_fcos
from tinyfast.modeling import AdapFCOS, AdapRetinaNet, FasterFPN, FasterFPNConfig, FCOSConfig, RetinaNetConfig

FULL = {"batch": 1, "height": 512, "width": 640, "rounds": 2, "baseline_runs": 2}
QUICK = {"batch": 1, "height": 128, "width": 160, "rounds": 1, "baseline_runs": 1}
PERSONS_PER_IMAGE = 100


@dataclass(frozen=True)
class Family:
    """Ours (called ``model(images [B,3,H,W], targets)`` with 0-based labels) and torchvision's model of the
    same family for an input size (called with lists, labels counted from 1: 0 is the background)."""

    name: str
    ours: Callable[[], nn.Module]
    torchvision: Callable[[int, int], nn.Module]


FAMILIES = [
    Family(
        "FCOS",
        lambda: AdapFCOS(
            FCOSConfig(backbone="resnet50", pretrained=False, backbone_norm="batch", frozen_stages=-1)
        ),
        lambda height, width: torchvision.models.detection.fcos_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=2, min_size=height, max_size=width
        ),
    ),
    Family(
        "RetinaNet",
        lambda: AdapRetinaNet(
            RetinaNetConfig(backbone="resnet50", pretrained=False, backbone_norm="batch", frozen_stages=-1)
        ),
        lambda height, width: torchvision.models.detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=2, min_size=height, max_size=width
        ),
    ),
    Family(
        "FasterRCNN",
        lambda: FasterFPN(
            FasterFPNConfig(backbone="resnet50", pretrained=False, backbone_norm="batch", frozen_stages=-1)
        ),
        lambda height, width: torchvision.models.detection.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=2, min_size=height, max_size=width
        ),
    ),
]


def tiny_person_batch(settings, device):
    workload = tiny_person_fcos(settings["batch"], PERSONS_PER_IMAGE, settings["height"], settings["width"])
    images = torch.rand(
        settings["batch"],
        3,
        settings["height"],
        settings["width"],
        generator=torch.Generator().manual_seed(0),
    )
    targets = []
    for boxes in workload.gt_boxes.split(workload.gt_counts.tolist()):
        boxes = boxes[((boxes[:, 2:] - boxes[:, :2]) >= 1).all(dim=1)]
        targets.append(
            {"boxes": boxes.to(device), "labels": torch.zeros(len(boxes), dtype=torch.int64, device=device)}
        )
    return images.to(device), targets


def training_step(model, optimizer, images, targets, dtype=None):
    """Forward and losses (under autocast in `dtype` unless None), backward, SGD step."""
    device_type = next(model.parameters()).device.type
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
@pytest.mark.parametrize("device", DEVICES)
def test_training_step_vs_torchvision(benchmark, summary_line, family, device, precision):
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    if dtype is not None:
        needs_native_bf16(device)
    # bf16 as each side runs best: autocast, weights and images channels last (both sides the same).
    memory_format = torch.contiguous_format if dtype is None else torch.channels_last
    settings = QUICK if quick_mode(benchmark) else FULL
    images, targets = tiny_person_batch(settings, device)
    images = images.contiguous(memory_format=memory_format)
    torch.manual_seed(0)
    ours_model = family.ours().to(device, memory_format=memory_format).train()
    theirs_model = family.torchvision(settings["height"], settings["width"])
    theirs_model = theirs_model.to(device, memory_format=memory_format).train()
    theirs_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    ours_sgd = torch.optim.SGD(ours_model.parameters(), lr=1e-3, momentum=0.9)
    theirs_sgd = torch.optim.SGD(theirs_model.parameters(), lr=1e-3, momentum=0.9)
    ours = synchronized(lambda: training_step(ours_model, ours_sgd, images, targets, dtype), device)
    theirs = synchronized(
        lambda: training_step(theirs_model, theirs_sgd, list(images), theirs_targets, dtype), device
    )

    ours(), theirs()  # warm-up outside both timings
    baseline_loss, baseline_s = best_time(theirs, settings["baseline_runs"])
    loss = benchmark.pedantic(ours, rounds=settings["rounds"], warmup_rounds=0)
    ours_s = benchmark.stats.stats.min if benchmark.enabled else best_time(ours, 1)[1]

    assert torch.isfinite(loss), f"our {family.name} loss is {loss.item()}"
    if not torch.isfinite(baseline_loss):  # measured: torchvision's Faster R-CNN in bf16 on the CPU
        pytest.xfail(f"torchvision's {family.name} loss is {baseline_loss.item()} ({precision})")
    ratio = baseline_s / ours_s
    size = f"{settings['batch']} x {settings['width']}x{settings['height']}"
    persons = sum(len(t["boxes"]) for t in targets)
    benchmark.extra_info.update(family=family.name, precision=precision, size=size, persons=persons,
                                baseline_s=baseline_s, ours_s=ours_s, ratio=ratio)  # fmt: skip
    summary_line(
        f"training step {family.name} {device} {precision}, {size}, {persons} persons: ours {ours_s:.2f} s, "
        f"torchvision "
        f"{baseline_s:.2f} s, ratio {ratio:.2f}x"
    )
