"""Evaluate COCO-format detections on TinyPerson: ``python -m tinyfast.evaluate GT.json RESULTS.json``.

Prints AP and AR at IoU 0.25/0.5/0.75 for every size range in the reference evaluator's layout, and with
``--mr`` the log-average miss rate per size setup.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tinyfast.evaluation import EvalParams, MissRateParams, evaluate


def format_report(
    metrics: dict[str, float], params: EvalParams, mr_params: MissRateParams | None = None
) -> str:
    line = " {:<18} {} @[ IoU={:<9} | area={:>10s} | maxDets={:>4d} ] = {:0.4f}"
    lines = []
    for kind, title in (("AP", "Average Precision"), ("AR", "Average Recall")):
        for threshold in params.iou_thresholds:
            for label, _, _ in params.area_ranges:
                value = metrics[f"{kind}{round(threshold * 100):d}_{label}"]
                lines.append(
                    line.format(title, f"({kind})", f"{threshold:0.2f}", label, params.max_dets[-1], value)
                )
    if mr_params is not None:
        for label, lo, hi in mr_params.size_ranges:
            size = f"[{lo:g}:{hi:g}]" if hi < 1e10 else f"[{lo:g}:inf]"
            lines.append(
                f" Average Miss Rate  (MR) @[ IoU={mr_params.iou_threshold:<9.2f} | size={size:>10s} | "
                f"maxDets={mr_params.max_dets:>4d} ] = {metrics[f'MR_{label}']:0.4f}  ({label})"
            )
    if "AP50_tiny" in metrics:
        lines.append(f"AP50_tiny (headline) = {100 * metrics['AP50_tiny']:.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyfast.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("gt", help="TinyPerson ground truth, COCO json")
    parser.add_argument("results", help="detections, COCO results json (image_id, category_id, bbox, score)")
    parser.add_argument("--max-dets", type=int, default=1000, help="detections kept per image (default 1000)")
    parser.add_argument(
        "--mr", action="store_true", help="also print the log-average miss rate per size setup"
    )
    args = parser.parse_args(argv)
    params = EvalParams.tinyperson(args.max_dets)
    mr_params = MissRateParams(max_dets=args.max_dets) if args.mr else None
    try:
        metrics = evaluate(args.gt, args.results, args.max_dets, miss_rate=args.mr)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(metrics, params, mr_params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
