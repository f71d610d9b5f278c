"""Is P2PNet's Hungarian matching a bottleneck of its training? `python -m bench.p2pnet_matching`.

Not a benchmark test (pytest does not collect it): it times, per training image, the one-to-one matching of
the proposals to the annotated points (`tinyfast.modeling.p2pnet.match_points`, scipy's
linear_sum_assignment on the full proposals x points cost) against the rest of a training step (forward,
losses, backward) on the CPU, and prints their ratio. Two settings: the synthetic config's model
(ResNet-18, 64 channels) on 320x256 cuts with 30 points, and the TinyPerson config's (ResNet-50, 256
channels) on 640x512 cuts with 100 points (`--persons` changes both). A ratio is what this measures: on a
busy machine both times stretch together.
"""

from __future__ import annotations

import argparse
import time

import torch

from tinyfast.engine.config import load_config
from tinyfast.modeling.build import build_model
from tinyfast.modeling.p2pnet import match_points

SETTINGS = (("p2pnet_synthetic", (256, 320), 30), ("p2pnet_tinyperson", (512, 640), 100))


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(config_name: str, size: tuple[int, int], persons: int, repeats: int) -> tuple[float, float]:
    """(seconds of the matching, seconds of forward + losses + backward), per image of a batch of 2."""
    torch.manual_seed(0)
    model = build_model({**load_config(config_name)["model"], "pretrained": False, "backbone_norm": "batch"})
    model.train()
    height, width = size
    images = torch.randn(2, 3, height, width)
    targets = [
        {
            "points": torch.rand(persons, 2) * torch.tensor([width, height]),
            "labels": torch.zeros(persons, dtype=torch.long),
        }
        for _ in range(2)
    ]

    def step():
        model.zero_grad()
        sum(model(images, targets).values()).backward()

    step()  # warm-up
    total = best_of(repeats, step) / 2
    with torch.no_grad():
        logits, points = model.predict_proposals(images)
        probs = logits.softmax(-1)
    settings = model.config

    def matching():
        for image, target in enumerate(targets):
            match_points(
                points[image],
                probs[image],
                target["points"],
                target["labels"],
                settings.match_distance_weight,
                settings.match_class_weight,
            )

    matched = best_of(repeats, matching) / 2
    return matched, total - matched  # the step's own matching taken out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--persons", type=int, default=None, help="points per image in both settings")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for config_name, size, persons in SETTINGS:
        persons = args.persons or persons
        matched, rest = measure(config_name, size, persons, args.repeats)
        proposals = (size[0] // 4) * (size[1] // 4) * 4
        print(
            f"{config_name}: {size[1]}x{size[0]}, {proposals} proposals, {persons} points: matching "
            f"{matched * 1e3:.1f} ms per image, the rest of the step {rest * 1e3:.0f} ms; "
            f"ratio {matched / rest:.3f}"
        )


if __name__ == "__main__":
    main()
