"""Test a trained detector: `python -m tinyfast.test CONFIG CHECKPOINT [--policy during|after] [k=v ...]`.

Runs tiled inference on the config's test images with the merge policy, writes the COCO results json and
the metrics next to the checkpoint (or into --out), and prints the evaluation table. Under
`torchrun --nproc_per_node N -m tinyfast.test ...` every process infers a share of the images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyfast.engine import distributed
from tinyfast.engine.checkpoint import load_checkpoint
from tinyfast.engine.config import load_config
from tinyfast.engine.evaluation import evaluate_detector
from tinyfast.evaluation import EvalParams, format_report
from tinyfast.modeling.build import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyfast.test", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the TOML config the model was trained with")
    parser.add_argument("checkpoint", help="a .pth file written by python -m tinyfast.train")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config values to change")
    parser.add_argument("--policy", choices=("during", "after"), default=None, help="merge policy")
    parser.add_argument("--out", default=None, help="folder for results and metrics")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        model = load_model(config["model"], load_checkpoint(Path(args.checkpoint)), args.checkpoint)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    policy = args.policy or config["test"]["policy"]
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).parent
    with distributed.launch(config["train"]["device"]) as processes:
        metrics = evaluate_detector(
            model.to(processes.device).detect_tiles,
            config,
            out_dir,
            policy,
            progress=not args.no_progress and processes.is_main,
            images_per_batch=config["test"]["images_per_batch"],
            device=processes.device,
        )
    if processes.is_main:
        print(format_report(metrics, EvalParams.tinyperson(1000)))
        print(f"results and metrics ({policy}): {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
