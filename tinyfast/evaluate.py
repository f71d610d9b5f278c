"""Evaluate COCO-format detections on TinyPerson: ``python -m tinyfast.evaluate GT.json RESULTS.json``.

Prints AP and AR at IoU 0.25/0.5/0.75 for every size range in the reference evaluator's layout, and with
``--mr`` the log-average miss rate per size setup.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tinyfast.evaluation import EvalParams, MissRateParams, evaluate, format_report
from tinyfast.evaluation.coco_format import match_by_file_name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyfast.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("gt", help="TinyPerson ground truth, COCO json")
    parser.add_argument("results", help="detections, COCO results json (image_id, category_id, bbox, score)")
    parser.add_argument("--max-dets", type=int, default=1000, help="detections kept per image (default 1000)")
    parser.add_argument(
        "--mr", action="store_true", help="also print the log-average miss rate per size setup"
    )
    parser.add_argument(
        "--by-file-name",
        action="store_true",
        help="match the results to the ground truth's images by their file_name (predict's results.json)",
    )
    args = parser.parse_args(argv)
    params = EvalParams.tinyperson(args.max_dets)
    mr_params = MissRateParams(max_dets=args.max_dets) if args.mr else None
    try:
        results = match_by_file_name(args.results, args.gt) if args.by_file_name else args.results
        metrics = evaluate(args.gt, results, args.max_dets, miss_rate=args.mr)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(metrics, params, mr_params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
