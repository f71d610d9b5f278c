"""The throughput suite in one table of ratios and a plot, with the machine it was measured on.

    python -m bench.report [--quick] [--out DIR]     # runs pytest bench --benchmark-only, then reports
    python -m bench.report FILE [FILE ...]          # reports saved pytest-benchmark json files

Each benchmark measures its baseline in the same test and stores both in ``extra_info`` (``baseline_s``,
``ours_s``, ``ratio``, and ``memory_ratio`` where peak memory is measured); this only collects them. Without
files the suite runs first (``--quick``: the small sizes CI runs, ``TINYFAST_BENCH_QUICK=1``), its json,
``report.md`` and ``report.png`` (speed-up per benchmark, log scale) go to ``--out`` (default
``runs/bench``), and the suite's wall time is part of the caption.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tinyfast.utils.machine import describe, machine

_MEASURED = ("baseline_s", "ours_s", "ratio", "memory_ratio")

# The detection benchmarks' columns (bench.real_images, bench.bench_yolo_rpi640): metric key, header.
DETECTION_METRICS = (
    ("AP50_tiny", "AP50 tiny"),
    ("AP50_tiny1", "tiny1"),
    ("AP50_tiny2", "tiny2"),
    ("AP50_tiny3", "tiny3"),
    ("AP50_small", "small"),
    ("AP50_all", "AP50 all"),
    ("AR50_tiny", "AR50 tiny"),
)
DETECTION_SPEEDS = (
    ("training_images_per_s", "training images/s"),
    ("inference_images_per_s", "inference images/s"),
)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table: one header line, the separator, one line per row of cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def detection_table(rows: Sequence[dict]) -> str:
    """One line per row (``name``, the metrics of ``DETECTION_METRICS`` as fractions to 3 decimals, the
    speeds of ``DETECTION_SPEEDS`` to 3 significant digits); a value a row does not have is an empty cell,
    a metric without ground truth in its size range (the evaluator's -1) is "n/a"."""

    def metric(row: dict, key: str) -> str:
        value = row.get(key)
        return "" if value is None else "n/a" if value < 0 else f"{value:.3f}"

    def speed(row: dict, key: str) -> str:
        value = row.get(key)
        return "" if value is None else f"{value:.3g}"

    headers = ["", *(header for _, header in DETECTION_METRICS), *(header for _, header in DETECTION_SPEEDS)]
    return markdown_table(
        headers,
        (
            [
                row["name"],
                *(metric(row, key) for key, _ in DETECTION_METRICS),
                *(speed(row, key) for key, _ in DETECTION_SPEEDS),
            ]
            for row in rows
        ),
    )


def write_detection_report(rows: Sequence[dict], out: Path, stem: str, note: str) -> str:
    """``{stem}.md`` (a caption: the date, the machine, ``note``; then the table) and ``{stem}.json`` (the
    same rows, every value they hold) in ``out``; returns the markdown."""
    described = machine()
    caption = f"Measured {datetime.date.today().isoformat()} on {describe(described)}. {note}".strip()
    markdown = f"{caption}\n\n{detection_table(rows)}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(markdown)
    saved = {"caption": caption, "machine": described, "rows": list(rows)}
    (out / f"{stem}.json").write_text(json.dumps(saved, indent=2) + "\n")
    return markdown


def _seconds(value: float) -> str:
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def _details(info: dict) -> str:
    return ", ".join(
        f"{key} {value}" for key, value in info.items() if key not in _MEASURED and "bytes" not in key
    )


def measured(report: dict) -> list[dict]:
    """The benchmarks of a pytest-benchmark json that hold a ratio to their baseline."""
    return [bench for bench in report["benchmarks"] if "ratio" in bench.get("extra_info", {})]


def caption(report: dict) -> str:
    machine = report.get("machine_info", {})
    described = machine.get("tinyfast")
    where = describe(described) if described else machine.get("cpu", {}).get("brand_raw", "unknown CPU")
    return f"Measured {report.get('datetime', '')[:10]} on {where}."


def table(report: dict) -> str:
    rows = []
    for bench in measured(report):
        info = bench["extra_info"]
        memory = f"{info['memory_ratio']:.0f}x less" if "memory_ratio" in info else ""
        rows.append(
            [bench["name"], _details(info), _seconds(info["ours_s"]), _seconds(info["baseline_s"]),
             f"{info['ratio']:.2f}x", memory]
        )  # fmt: skip
    return markdown_table(["benchmark", "workload", "ours", "baseline", "speed-up", "peak memory"], rows)


def save_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = measured(report)
    names = [bench["name"].removeprefix("test_") for bench in benches]
    ratios = [bench["extra_info"]["ratio"] for bench in benches]
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(benches) + 1.2), layout="constrained")
    axes.barh(names, ratios, color=["tab:blue" if r >= 1 else "tab:red" for r in ratios])
    axes.set_xscale("log")
    axes.axvline(1.0, color="black", linewidth=0.8)
    for position, ratio in enumerate(ratios):
        axes.annotate(f"{ratio:.2f}x", (ratio, position), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=8)  # fmt: skip
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=7)
    axes.set_xlabel("speed-up over the baseline measured in the same run (log scale)")
    axes.set_title(caption(report), fontsize=8)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_suite(out: Path, quick: bool) -> tuple[Path, float]:
    """Runs the benchmarks, saving their json into ``out``; returns the json's path and the wall time."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "benchmarks.json"
    environment = {**os.environ, "TINYFAST_BENCH_QUICK": "1" if quick else "0"}
    command = [sys.executable, "-m", "pytest", str(Path(__file__).parent), "--benchmark-only", "-q",
               "-p", "no:cacheprovider", f"--benchmark-json={saved}"]  # fmt: skip
    start = time.perf_counter()
    finished = subprocess.run(command, env=environment, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"the benchmarks failed (pytest exit code {finished.returncode})")
    return saved, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reports", nargs="*", help="pytest-benchmark json files (default: run the suite)")
    parser.add_argument("--quick", action="store_true", help="run the suite at its small CI sizes")
    parser.add_argument("--out", default=None, help="folder for the json, report.md and report.png")
    args = parser.parse_args(argv)
    if args.reports and args.quick:
        parser.error("--quick runs the suite: give no files with it")
    wall_time = None
    if args.reports:
        paths = [Path(path) for path in args.reports]
    else:
        saved, wall_time = run_suite(Path(args.out or "runs/bench"), args.quick)
        paths = [saved]
    for path in paths:
        report = json.loads(path.read_text())
        out = Path(args.out) if args.out else path.parent
        out.mkdir(parents=True, exist_ok=True)
        text = caption(report)
        if wall_time is not None:
            text += f" The suite{' (quick sizes)' if args.quick else ''} took {wall_time / 60:.1f} min."
        markdown = f"{text}\n\n{table(report)}"
        stem = "report" if len(paths) == 1 else f"report_{path.stem}"
        (out / f"{stem}.md").write_text(markdown)
        save_plot(report, out / f"{stem}.png")
        print(f"{path}:\n\n{markdown}\n{out / stem}.md, {out / stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
