"""The metrics as the reference evaluator prints them."""

from __future__ import annotations

from tinyfast.evaluation.params import EvalParams, MissRateParams


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
