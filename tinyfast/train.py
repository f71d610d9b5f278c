"""Train a detector: `python -m tinyfast.train [CONFIG] [key.sub=value ...]`.

With no arguments, the embedded default (fcos_synthetic): the synthetic set is generated on
first use, a small Adap FCOS is trained on the CPU and evaluated with tiled inference on the held-out
images; checkpoints, logs, results and metrics go to its run folder and AP50 tiny is printed.

Several processes (one per GPU, or gloo processes on the CPU), several machines:
`torchrun --nproc_per_node N [--nnodes M ...] -m tinyfast.train CONFIG [key.sub=value ...]`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tinyfast.engine.config import DEFAULT_CONFIG, load_config
from tinyfast.engine.evaluation import format_metrics
from tinyfast.engine.trainer import train
from tinyfast.modeling.build import model_kind
from tinyfast.utils import cli
from tinyfast.utils.comm import is_main_process


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="python -m tinyfast.train", description=__doc__.splitlines()[0])
    parser.add_argument(
        "config", nargs="?", default=str(DEFAULT_CONFIG), help="a TOML file, or a shipped config's name"
    )
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config values to change")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from the run folder's latest.pth")
    resume.add_argument("--resume-from", metavar="CHECKPOINT", help="continue from this checkpoint")
    args = parser.parse_intermixed_args(argv)
    if "=" in args.config:  # only overrides were given
        args.overrides.insert(0, args.config)
        args.config = str(DEFAULT_CONFIG)
    return args


@cli.command
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    main_process = is_main_process()
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(message)s")
    run_dir = Path(config["run_dir"])
    resume = args.resume_from or ("auto" if args.resume else None)
    _, metrics = train(config, run_dir, progress=not args.no_progress, resume=resume)
    if main_process:
        if metrics:
            print(format_metrics(metrics, model_kind(config["model"])))
        print(f"checkpoints, logs, results and metrics: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
