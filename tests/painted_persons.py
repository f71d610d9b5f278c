"""Fake detections for tiled inference: persons painted into an image, found again by a fake detector."""

import torch

IMAGE_SIZE = (1000, 700)  # tiles x in [0, 640) and [360, 1000), y in [0, 512) and [188, 700)


FIRST_ID = 1000  # bilinear resizing blends a person's edge with the background into values below any id


def painted_image(persons, size=IMAGE_SIZE):
    """Channel 0 holds FIRST_ID + k inside person k's box (integer pixel coordinates), 0 elsewhere."""
    width, height = size
    image = torch.zeros(3, height, width)
    for k, (x1, y1, x2, y2) in enumerate(persons):
        image[0, y1:y2, x1:x2] = FIRST_ID + k
    return image


class PaintedPersonDetector:
    """Returns the bounding box of every painted person visible in a tile (jittered by ``jitter`` px),
    scored 0.9 - score_step * k, 0.2 less when the box touches the tile's edge (as a detector is less sure
    of a cut person). Records the batch shapes and settings it was called with."""

    def __init__(self, jitter=0.0, score_step=0.01):
        self.jitter = jitter
        self.score_step = score_step
        self.calls = []

    def __call__(self, tiles, settings):
        self.calls.append((tuple(tiles.shape), settings))
        return [self._find(tile) for tile in tiles]

    def _find(self, tile):
        height, width = tile.shape[-2:]
        values = tile[0]
        ys, xs = torch.nonzero((values >= FIRST_ID) & (values == values.round()), as_tuple=True)
        persons, person_of_pixel = torch.unique(values[ys, xs], return_inverse=True)
        count = len(persons)
        boxes = torch.stack(
            [
                torch.full((count,), width).scatter_reduce(0, person_of_pixel, xs, "amin"),
                torch.full((count,), height).scatter_reduce(0, person_of_pixel, ys, "amin"),
                torch.zeros(count, dtype=torch.int64).scatter_reduce(0, person_of_pixel, xs + 1, "amax"),
                torch.zeros(count, dtype=torch.int64).scatter_reduce(0, person_of_pixel, ys + 1, "amax"),
            ],
            dim=1,
        ).float()
        cut = (boxes[:, 0] == 0) | (boxes[:, 1] == 0) | (boxes[:, 2] == width) | (boxes[:, 3] == height)
        scores = 0.9 - self.score_step * (persons.double() - FIRST_ID) - 0.2 * cut.double()
        return {
            "boxes": boxes + self.jitter * torch.tensor([1.0, -1.0, -1.0, 1.0]),
            "scores": scores.float(),
            "labels": torch.zeros(count, dtype=torch.int64),
        }
