"""Evaluate COCO-format detections on TinyPerson: ``python -m tinyfast.evaluate GT.json RESULTS.json``.

Prints AP and AR at IoU 0.25/0.5/0.75 for every size range in the reference evaluator's layout, and with
``--mr`` the log-average miss rate per size setup. ``--task all|sea|earth`` scores the categories as
``python -m tinyfast.test`` does for that ``data.task`` (without it, every category of GT.json is scored as
it is). With ``--points``: point localisation AP/AR at the normalised distances ``--match-thresholds``
(results carry ``point`` [x, y], or a ``bbox``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tinyfast.data.annotations import TASKS, read_json, task_ground_truth
from tinyfast.evaluation import (
    EvalParams,
    MissRateParams,
    evaluate,
    evaluate_points,
    format_point_report,
    format_report,
)
from tinyfast.evaluation.coco_format import match_by_file_name
from tinyfast.evaluation.points import DEFAULT_MATCH_THRESHOLDS, DEFAULT_POINT_MAX_DETS
from tinyfast.utils import cli


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m tinyfast.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("gt", help="TinyPerson ground truth, COCO json")
    parser.add_argument("results", help="detections, COCO results json (image_id, category_id, bbox, score)")
    parser.add_argument(
        "--max-dets",
        type=cli.positive_int,
        default=None,
        help="detections kept per image (default 1000; 200 with --points)",
    )
    parser.add_argument(
        "--mr", action="store_true", help="also print the log-average miss rate per size setup"
    )
    parser.add_argument(
        "--task", choices=TASKS, default=None, help="score the categories as tinyfast.test does for data.task"
    )
    parser.add_argument("--points", action="store_true", help="evaluate point localisation (CPR's metric)")
    parser.add_argument(
        "--match-thresholds",
        type=float,
        nargs="+",
        default=DEFAULT_MATCH_THRESHOLDS,
        help="with --points: normalised distances tau a point must be within (default 0.5 1.0 2.0)",
    )
    parser.add_argument(
        "--by-file-name",
        action="store_true",
        help="match the results to the ground truth's images by their file_name (predict's results.json)",
    )
    args = parser.parse_intermixed_args(argv)
    if args.points:
        return _main_points(args)
    args.max_dets = 1000 if args.max_dets is None else args.max_dets
    params = EvalParams.tinyperson(args.max_dets)
    mr_params = MissRateParams(max_dets=args.max_dets) if args.mr else None
    gt = args.gt
    if args.task is not None:
        gt = task_ground_truth(read_json(args.gt), args.task, args.gt)
    results = match_by_file_name(args.results, gt) if args.by_file_name else args.results
    metrics = evaluate(gt, results, args.max_dets, miss_rate=args.mr)
    print(format_report(metrics, params, mr_params))
    return 0


def _main_points(args: argparse.Namespace) -> int:
    max_dets = DEFAULT_POINT_MAX_DETS if args.max_dets is None else args.max_dets
    results = match_by_file_name(args.results, args.gt) if args.by_file_name else args.results
    metrics = evaluate_points(args.gt, results, args.match_thresholds, max_dets)
    print(format_point_report(metrics, args.match_thresholds, max_dets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
