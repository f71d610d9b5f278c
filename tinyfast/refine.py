"""Refine point annotations with a trained CPR: `python -m tinyfast.refine RUN_DIR --out refined.json`.

The model is a run folder (its `config.toml` and `latest.pth`) or a checkpoint of `model.name = "cpr"`.
The points refined are those of `--annotations` (a point-annotated json, each annotation's `point`), or by
default the run's own training points (`data.train_annotations` with its `data.points`: the coarse points
it was trained on). Images are read from `--images` (default: the run's `data.train_images`). Writes the
json with every person's refined `point` (everything else as it was) and prints how far the points lie
from the box centres before and after (also written next to it, `*_report.json`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from tinyfast.data.points import point_json
from tinyfast.engine.predictor import resolve_model
from tinyfast.engine.refinement import format_refine_report, refine_point_json
from tinyfast.modeling.build import load_model, model_kind
from tinyfast.modeling.inference import prepare_for_inference
from tinyfast.utils import cli


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m tinyfast.refine", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a CPR run folder or checkpoint (.pth)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config values to change")
    parser.add_argument("--annotations", default=None, help="point-annotated json (default: the run's)")
    parser.add_argument("--images", default=None, help="its image folder (default: data.train_images)")
    parser.add_argument("--out", required=True, help="the refined json to write")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the GPU when there is one)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_intermixed_args(argv)
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give the json file to write")
    config, checkpoint, state = resolve_model(args.model, args.overrides)
    if model_kind(config["model"]) != "refiner":
        raise ValueError(f"{checkpoint} holds a {config['model']['name']!r} model: refine needs a CPR (cpr)")
    data = config["data"]
    if args.annotations is None:
        points = point_json(data["train_annotations"], data["points"], data["points_seed"])
        name = data["train_annotations"]
    else:
        points, name = point_json(args.annotations, "annotated"), args.annotations
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    refiner = prepare_for_inference(
        load_model(config["model"], state, str(checkpoint)), config["test"]["precision"], device
    )
    refined, report = refine_point_json(
        refiner,
        points,
        args.images or data["train_images"],
        normalization=data["normalization"],
        task=data["task"],
        device=device,
        progress=not args.no_progress,
        name=str(name),
        image_scale=data["image_scale"],
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(refined, separators=(",", ":")))
    out.with_name(f"{out.stem}_report.json").write_text(json.dumps(report, indent=2))
    print(format_refine_report(report))
    print(f"refined points: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
