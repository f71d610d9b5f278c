"""Prints the ratios of a pytest-benchmark json (``pytest bench --benchmark-json FILE``) as a markdown table.

    python -m bench.report FILE [FILE ...]

Each benchmark stores its baseline, measured in the same test, in ``extra_info`` (``baseline_s``,
``ours_s``, ``ratio``); this only collects them, with the machine they were measured on.
"""

import argparse
import json


def rows(report: dict) -> list[str]:
    lines = []
    for bench in report["benchmarks"]:
        info = bench.get("extra_info", {})
        if "ratio" not in info:
            continue
        lines.append(
            f"| {bench['name']} | {info['ours_s'] * 1e3:.2f} | {info['baseline_s'] * 1e3:.2f} | "
            f"{info['ratio']:.1f}x |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reports", nargs="+", help="pytest-benchmark json files")
    args = parser.parse_args(argv)
    for path in args.reports:
        with open(path) as file:
            report = json.load(file)
        machine = report.get("machine_info", {})
        cpu = machine.get("cpu", {}).get("brand_raw", "unknown CPU")
        print(f"\n{path}: {machine.get('node', '?')}, {cpu}, {report.get('datetime', '')}\n")
        print("| benchmark | ours (ms) | baseline (ms) | speed-up |")
        print("|---|---|---|---|")
        print("\n".join(rows(report)))


if __name__ == "__main__":
    main()
