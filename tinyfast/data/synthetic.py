"""Deterministic synthetic data: a TinyPerson-like set in the TinyPerson json layout, a COCO-like source set.

    python -m tinyfast.data.synthetic --out DIR [--preset tiny|default|dense|source] [--seed 0]

writes DIR/images/{train,test}_NNNN.jpg and DIR/annotations/{train,test}.json: beach scenes (sea above a
wavy shoreline, sand below) of 1920x1080 and 1280x720, person-shaped figures 2-32 px tall (SIZE_MIX),
sea_person in the water and earth_person on the sand, sparse images and dense ones (DENSE_PERSONS, all
boxes `in_dense_image`), crowd regions drawn as clusters and annotated as one `ignore` box, faint figures
annotated `uncertain`, and a watermark annotated `ignore` + `logo` on some images. Every image depends
only on (seed, split, index), so output is the same for a seed whatever runs before it.

The `source` preset (`generate_source`) writes a pre-training set for Scale Match beside it, in COCO's
layout: DIR/images/source_NNNN.jpg and DIR/annotations/source.json, the same beach scenes at 1280x960 and
960x720 with a few ordinary-sized persons (20-300 px tall, log-uniform) per image, category "person" (id 1)
as in COCO, surfboards (another category, "surfboard", id 42) and crowds of persons annotated as one
`iscrowd` box on some images.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import encode_jpeg

from tinyfast.data.annotations import TINYPERSON_CATEGORIES
from tinyfast.utils import cli

# Figure heights in px: (low, high exclusive, share). TinyPerson's size classes: tiny1 2-8, tiny2 8-12,
# tiny3 12-20, small 20-32; most persons are under 20 px.
SIZE_MIX: tuple[tuple[int, int, float], ...] = ((2, 8, 0.35), (8, 12, 0.25), (12, 20, 0.25), (20, 33, 0.15))
SPARSE_PERSONS = (5, 60)
DENSE_PERSONS = (820, 1000)
UNCERTAIN_SHARE = 0.08
CROWDS_PER_SPARSE_IMAGE = (0, 2)
LOGO_EVERY = 4  # every 4th image carries a watermark
IMAGE_SIZES = ((1920, 1080), (1280, 720))
SEA_PERSON_ID, EARTH_PERSON_ID = 1, 2


@dataclass(frozen=True)
class Preset:
    train_images: int
    test_images: int
    dense_train: int
    dense_test: int


PRESETS = {
    "tiny": Preset(train_images=6, test_images=2, dense_train=1, dense_test=0),
    "default": Preset(train_images=24, test_images=8, dense_train=6, dense_test=1),
    # The default set with half of its test images dense (the merge-policy study: caps per image bite);
    # its training set and first four test images are the default's.
    "dense": Preset(train_images=24, test_images=8, dense_train=6, dense_test=4),
}


SOURCE_PRESET = "source"
SOURCE_IMAGES = 48
SOURCE_IMAGE_SIZES = ((1280, 960), (960, 720))
SOURCE_HEIGHTS = (20, 300)  # person heights in px, log-uniform
SOURCE_PERSONS = (1, 6)  # persons per image, high exclusive
SOURCE_SURFBOARDS = (0, 3)
SOURCE_CROWD_EVERY = 4  # every 4th source image holds a crowd (iscrowd)
SOURCE_STREAM = 2  # the source set's entropy next to the splits' 0 (train) and 1 (test)
COCO_PERSON_ID, COCO_SURFBOARD_ID = 1, 42
SOURCE_CATEGORIES: list[dict] = [
    {"id": COCO_PERSON_ID, "name": "person", "supercategory": "person"},
    {"id": COCO_SURFBOARD_ID, "name": "surfboard", "supercategory": "sports"},
]


@dataclass
class _Drawn:
    annotations: list[dict]
    image: np.ndarray  # H x W x 3 uint8


def generate(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> dict[str, Path]:
    """Write the data set; returns the annotation file of each split."""
    spec = PRESETS[preset]
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    written = {}
    for split_index, (split, count, dense) in enumerate(
        (("train", spec.train_images, spec.dense_train), ("test", spec.test_images, spec.dense_test))
    ):
        images, annotations = [], []
        for index in range(count):
            rng = np.random.default_rng([seed, split_index, index])
            width, height = IMAGE_SIZES[index % len(IMAGE_SIZES)]
            # Dense images are the last ones of the split, so the sparse ones do not move with the preset.
            drawn = _draw_image(
                rng, width, height, dense=index >= count - dense, logo=index % LOGO_EVERY == 0
            )
            file_name = f"{split}_{index:04d}.jpg"
            pixels = torch.from_numpy(drawn.image).permute(2, 0, 1).contiguous()
            (out / "images" / file_name).write_bytes(encode_jpeg(pixels, quality=92).numpy().tobytes())
            images.append({"file_name": file_name, "height": height, "width": width, "id": index})
            for ann in drawn.annotations:
                annotations.append({**ann, "image_id": index, "id": len(annotations)})
        path = out / "annotations" / f"{split}.json"
        coco = {
            "type": "instance",
            "images": images,
            "annotations": annotations,
            "categories": TINYPERSON_CATEGORIES,
        }
        path.write_text(json.dumps(coco, separators=(",", ":")))
        written[split] = path
    return written


def generate_source(out_dir: str | Path, num_images: int = SOURCE_IMAGES, seed: int = 0) -> Path:
    """Write the COCO-like source set (module docstring) beside the tiny one; returns its json. Image i
    depends only on (seed, i)."""
    if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images < 1:
        raise ValueError(f"num_images must be an int >= 1, got {num_images!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, SOURCE_STREAM, index])
        width, height = SOURCE_IMAGE_SIZES[index % len(SOURCE_IMAGE_SIZES)]
        drawn = _draw_source_image(rng, width, height, crowd=index % SOURCE_CROWD_EVERY == 0)
        file_name = f"source_{index:04d}.jpg"
        pixels = torch.from_numpy(drawn.image).permute(2, 0, 1).contiguous()
        (out / "images" / file_name).write_bytes(encode_jpeg(pixels, quality=92).numpy().tobytes())
        images.append({"file_name": file_name, "height": height, "width": width, "id": index})
        for ann in drawn.annotations:
            annotations.append({**ann, "image_id": index, "id": len(annotations)})
    path = out / "annotations" / "source.json"
    coco = {"images": images, "annotations": annotations, "categories": SOURCE_CATEGORIES}
    path.write_text(json.dumps(coco, separators=(",", ":")))
    return path


def _draw_source_image(rng: np.random.Generator, width: int, height: int, *, crowd: bool) -> _Drawn:
    shore = _shoreline(rng, width, height)
    image = _background(rng, width, height, shore)
    annotations = []

    def add(box: tuple[int, int, int, int], category: int, iscrowd: bool = False) -> None:
        x, y, w, h = (float(v) for v in box)
        annotations.append(
            {
                "segmentation": [[x, y, x, y + h, x + w, y + h, x + w, y]],
                "bbox": [x, y, w, h],
                "category_id": category,
                "area": w * h,
                "iscrowd": int(iscrowd),
            }
        )

    if crowd:
        add(_draw_crowd(rng, image, shore), COCO_PERSON_ID, iscrowd=True)
    for _ in range(rng.integers(*SOURCE_SURFBOARDS)):
        add(_draw_surfboard(rng, image), COCO_SURFBOARD_ID)
    low, high = np.log(SOURCE_HEIGHTS)
    for _ in range(rng.integers(*SOURCE_PERSONS)):
        h = int(round(np.exp(rng.uniform(low, high))))
        w = max(1, round(h * rng.uniform(0.3, 0.55)))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        _paint_figure(rng, image, x, y, w, h, 1.0, swimming=y + h <= shore[x])
        add((x, y, w, h), COCO_PERSON_ID)
    return _Drawn(annotations, image)


def _draw_surfboard(rng: np.random.Generator, image: np.ndarray) -> tuple[int, int, int, int]:
    height, width = image.shape[:2]
    w, h = int(rng.integers(60, 200)), int(rng.integers(10, 30))
    x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
    colour = rng.integers(0, 256, 3)
    image[y : y + h, x : x + w] = (image[y : y + h, x : x + w] * 0.2 + colour * 0.8).clip(0, 255)
    return x, y, w, h


def _draw_image(rng: np.random.Generator, width: int, height: int, *, dense: bool, logo: bool) -> _Drawn:
    shore = _shoreline(rng, width, height)
    image = _background(rng, width, height, shore)
    annotations = []

    def add(box: tuple[int, int, int, int], category: int, **flags: bool) -> None:
        x, y, w, h = box
        annotations.append(_annotation(x, y, w, h, category, in_dense_image=dense, **flags))

    if not dense:
        for _ in range(rng.integers(CROWDS_PER_SPARSE_IMAGE[0], CROWDS_PER_SPARSE_IMAGE[1] + 1)):
            box = _draw_crowd(rng, image, shore)
            add(box, _category(box, shore), ignore=True)
    persons = rng.integers(*DENSE_PERSONS) if dense else rng.integers(*SPARSE_PERSONS)
    for _ in range(persons):
        faint = not dense and rng.random() < UNCERTAIN_SHARE
        box = _draw_person(rng, image, shore, faint=faint, on_beach=dense and rng.random() < 0.8)
        add(box, _category(box, shore), uncertain=faint)
    if logo:
        add(_draw_logo(rng, image), EARTH_PERSON_ID, ignore=True, logo=True)
    return _Drawn(annotations, image)


def _annotation(x: int, y: int, w: int, h: int, category: int, **flags: bool) -> dict:
    x, y, w, h = float(x), float(y), float(w), float(h)
    return {
        "segmentation": [[x, y, x, y + h, x + w, y + h, x + w, y]],
        "bbox": [x, y, w, h],
        "category_id": category,
        "area": w * h,
        "iscrowd": 0,
        "ignore": flags.get("ignore", False),
        "uncertain": flags.get("uncertain", False),
        "logo": flags.get("logo", False),
        "in_dense_image": flags.get("in_dense_image", False),
    }


def _shoreline(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Row of the shore for every column: the sea is above it."""
    x = np.arange(width) / width
    base = rng.uniform(0.35, 0.65) * height
    wobble = sum(
        rng.uniform(0.01, 0.05) * height * np.sin(2 * np.pi * (k * x + rng.random())) for k in (1, 3)
    )
    return (base + wobble).astype(np.int64)


def _background(rng: np.random.Generator, width: int, height: int, shore: np.ndarray) -> np.ndarray:
    rows = np.arange(height, dtype=np.float32)[:, None]
    sea = rows < shore[None, :]
    sea_colour = (np.array([30, 110, 130]) + rng.integers(-15, 16, 3)).astype(np.float32)
    sand_colour = (np.array([200, 185, 150]) + rng.integers(-15, 16, 3)).astype(np.float32)
    waves = 8 * np.sin(
        rows / np.float32(rng.uniform(6, 14)) + 0.3 * np.sin(np.arange(width, dtype=np.float32) / 40)
    )
    # Smooth low-frequency shading plus fine grain, cheap at full HD.
    coarse = torch.from_numpy(rng.normal(0, 10, (1, 3, height // 16, width // 16)).astype(np.float32))
    shading = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    image = torch.where(
        torch.from_numpy(sea),
        torch.from_numpy(sea_colour)[:, None, None] + torch.from_numpy(waves),
        torch.from_numpy(sand_colour)[:, None, None],
    )
    image += shading + torch.from_numpy(rng.integers(-6, 7, (1, height, width), dtype=np.int8))
    image = image.permute(1, 2, 0).numpy()
    return image.clip(0, 255).astype(np.uint8)


def _figure_height(rng: np.random.Generator) -> int:
    shares = np.array([share for _, _, share in SIZE_MIX])
    low, high, _ = SIZE_MIX[rng.choice(len(SIZE_MIX), p=shares / shares.sum())]
    return int(rng.integers(low, high))


def _draw_person(
    rng: np.random.Generator, image: np.ndarray, shore: np.ndarray, *, faint: bool, on_beach: bool
) -> tuple[int, int, int, int]:
    height, width = image.shape[:2]
    h = _figure_height(rng)
    w = max(1, round(h * rng.uniform(0.3, 0.55)))
    x = int(rng.integers(0, width - w))
    low = min(int(shore[x]), height - h - 1) if on_beach else 0
    y = int(rng.integers(low, height - h))
    alpha = rng.uniform(0.25, 0.4) if faint else 1.0
    _paint_figure(rng, image, x, y, w, h, alpha, swimming=y + h <= shore[x])
    return x, y, w, h


def _paint_figure(
    rng: np.random.Generator,
    image: np.ndarray,
    x: int,
    y: int,
    w: int,
    h: int,
    alpha: float,
    *,
    swimming: bool,
) -> None:
    """Head, torso and legs (a swimmer shows head and shoulders only); tiny figures are a blob."""
    skin = np.array([225, 180, 150]) * rng.uniform(0.5, 1.05)
    clothes = rng.integers(0, 256, 3)
    head = max(1, round(h * 0.22))
    parts = (
        [((x, y, w, h), clothes)]
        if h < 5
        else [
            ((x + (w - max(1, w // 2)) // 2, y, max(1, w // 2), head), skin),
            ((x, y + head, w, (h - head) if swimming else round(h * 0.45)), clothes),
        ]
    )
    if h >= 5 and not swimming:
        leg_top = y + head + round(h * 0.45)
        parts.append(((x + w // 6, leg_top, max(1, w - 2 * (w // 6)), y + h - leg_top), clothes * 0.5))
    for (px, py, pw, ph), colour in parts:
        if pw > 0 and ph > 0:
            patch = image[py : py + ph, px : px + pw].astype(np.float32)
            image[py : py + ph, px : px + pw] = (patch * (1 - alpha) + colour * alpha).clip(0, 255)


def _draw_crowd(rng: np.random.Generator, image: np.ndarray, shore: np.ndarray) -> tuple[int, int, int, int]:
    height, width = image.shape[:2]
    w, h = int(rng.integers(60, 180)), int(rng.integers(25, 70))
    x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
    for _ in range(rng.integers(15, 40)):
        fh = int(rng.integers(6, min(h, 20)))
        fw = max(1, round(fh * 0.4))
        fx, fy = x + int(rng.integers(0, w - fw)), y + int(rng.integers(0, h - fh))
        _paint_figure(rng, image, fx, fy, fw, fh, 1.0, swimming=fy + fh <= shore[fx])
    return x, y, w, h


def _draw_logo(rng: np.random.Generator, image: np.ndarray) -> tuple[int, int, int, int]:
    height, width = image.shape[:2]
    w, h = int(width * rng.uniform(0.08, 0.14)), int(height * rng.uniform(0.03, 0.05))
    x, y = width - w - 20, 20
    patch = image[y : y + h, x : x + w].astype(np.float32)
    stripes = (np.arange(w) // 4 % 2 == 0)[None, :, None]
    image[y : y + h, x : x + w] = np.where(stripes, patch * 0.4 + 150, patch * 0.6 + 90).clip(0, 255)
    return x, y, w, h


def _category(box: tuple[int, int, int, int], shore: np.ndarray) -> int:
    x, y, w, h = box
    return SEA_PERSON_ID if y + h <= shore[min(x + w // 2, len(shore) - 1)] else EARTH_PERSON_ID


def statistics(coco: dict) -> dict:
    """What the generator promises, measured on a written json: size mix of the person boxes (share of
    heights per SIZE_MIX bin), dense images, persons in the largest image, ignore/uncertain/logo counts."""
    anns = coco["annotations"]
    persons = [a for a in anns if not (a["ignore"] or a["uncertain"])]
    heights = np.array([a["bbox"][3] for a in persons])
    per_image = np.bincount([a["image_id"] for a in anns], minlength=len(coco["images"]))
    dense_ids = {a["image_id"] for a in anns if a["in_dense_image"]}
    return {
        "images": len(coco["images"]),
        "image_sizes": sorted({(i["width"], i["height"]) for i in coco["images"]}),
        "persons": len(persons),
        "size_mix": [float(((heights >= lo) & (heights < hi)).mean()) for lo, hi, _ in SIZE_MIX],
        "under_20px": float((heights < 20).mean()),
        "dense_images": len(dense_ids),
        "max_per_image": int(per_image.max(initial=0)),
        "ignore": sum(bool(a["ignore"]) and not a["logo"] for a in anns),
        "uncertain": sum(bool(a["uncertain"]) for a in anns),
        "logo": sum(bool(a["logo"]) for a in anns),
        "sea": sum(a["category_id"] == SEA_PERSON_ID for a in persons),
        "earth": sum(a["category_id"] == EARTH_PERSON_ID for a in persons),
    }


def source_statistics(coco: dict) -> dict:
    """What `generate_source` promises, measured on its json: person heights, persons per image (crowds
    not counted), surfboards and crowds."""
    anns = coco["annotations"]
    persons = [a for a in anns if a["category_id"] == COCO_PERSON_ID and not a["iscrowd"]]
    heights = np.array([a["bbox"][3] for a in persons])
    per_image = np.bincount([a["image_id"] for a in persons], minlength=len(coco["images"]))
    return {
        "images": len(coco["images"]),
        "image_sizes": sorted({(i["width"], i["height"]) for i in coco["images"]}),
        "persons": len(persons),
        "height_range": [float(heights.min()), float(heights.max())],
        "height_quartiles": [float(q) for q in np.quantile(heights, [0.25, 0.5, 0.75])],
        "persons_per_image": [int(per_image.min()), int(per_image.max())],
        "surfboards": sum(a["category_id"] == COCO_SURFBOARD_ID for a in anns),
        "crowds": sum(bool(a["iscrowd"]) for a in anns),
    }


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m tinyfast.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--preset", choices=sorted([*PRESETS, SOURCE_PRESET]), default="tiny")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    args = parser.parse_args(argv)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a file, not a folder")
    if args.preset == SOURCE_PRESET:
        path = generate_source(args.out, seed=args.seed)
        print(f"source: {path} {json.dumps(source_statistics(json.loads(path.read_text())))}")
        return 0
    for split, path in generate(args.out, args.preset, args.seed).items():
        stats = statistics(json.loads(path.read_text()))
        print(f"{split}: {path} {json.dumps(stats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
