"""Evaluate COCO-format detections on TinyPerson: ``python -m tinyfast.evaluate GT.json RESULTS.json``.

Prints AP and AR at IoU 0.25/0.5/0.75 for every size range in the reference evaluator's layout, and with
``--mr`` the log-average miss rate per size setup. ``--task all|sea|earth`` scores the categories as
``python -m tinyfast.test`` does for that ``data.task`` (without it, every category of GT.json is scored as
it is).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tinyfast.data.annotations import TASKS, task_ground_truth
from tinyfast.evaluation import EvalParams, MissRateParams, evaluate, format_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyfast.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("gt", help="TinyPerson ground truth, COCO json")
    parser.add_argument("results", help="detections, COCO results json (image_id, category_id, bbox, score)")
    parser.add_argument("--max-dets", type=int, default=1000, help="detections kept per image (default 1000)")
    parser.add_argument(
        "--mr", action="store_true", help="also print the log-average miss rate per size setup"
    )
    parser.add_argument(
        "--task", choices=TASKS, default=None, help="score the categories as tinyfast.test does for data.task"
    )
    args = parser.parse_args(argv)
    params = EvalParams.tinyperson(args.max_dets)
    mr_params = MissRateParams(max_dets=args.max_dets) if args.mr else None
    try:
        gt = args.gt
        if args.task is not None:
            gt = task_ground_truth(json.loads(Path(args.gt).read_text()), args.task, args.gt)
        metrics = evaluate(gt, args.results, args.max_dets, miss_rate=args.mr)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(metrics, params, mr_params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
