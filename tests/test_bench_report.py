"""bench.report: the table of ratios, its caption (the machine) and the plot, from a benchmark json."""

import json

from bench.report import main, measured, table

REPORT = {
    "datetime": "2026-11-26T01:00:00",
    "machine_info": {"tinyfast": {"cpu": "AMD EPYC", "cores": 2, "torch": "2.14.1"}},
    "benchmarks": [
        {
            "name": "test_nms[cpu]",
            "extra_info": {"boxes": 10, "baseline_s": 0.5, "ours_s": 0.01, "ratio": 50.0},
        },
        {"name": "test_train[cpu-FCOS]", "extra_info": {"baseline_s": 6.0, "ours_s": 12.0, "ratio": 0.5}},
        {"name": "test_no_baseline", "extra_info": {}},
        {
            "name": "test_targets[cpu]",
            "extra_info": {
                "baseline_s": 2.0,
                "ours_s": 0.5,
                "ratio": 4.0,
                "memory_ratio": 700.0,
                "ours_peak_bytes": 1,
            },
        },  # fmt: skip
    ],
}


def test_table_has_one_row_per_measured_benchmark():
    assert [bench["name"] for bench in measured(REPORT)] == ["test_nms[cpu]", "test_train[cpu-FCOS]",
                                                             "test_targets[cpu]"]  # fmt: skip
    lines = table(REPORT).splitlines()
    assert len(lines) == 2 + 3
    assert lines[2] == "| test_nms[cpu] | boxes 10 | 10.0 ms | 500.0 ms | 50.00x |  |"
    assert lines[3] == "| test_train[cpu-FCOS] |  | 12.00 s | 6.00 s | 0.50x |  |"
    assert lines[4].endswith("| 4.00x | 700x less |")


def test_saved_json_gives_markdown_and_plot_with_the_machine(tmp_path, capsys):
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(REPORT))
    assert main([str(saved)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("Measured 2026-11-26 on AMD EPYC, 2 cores, torch 2.14.1.")
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "50.00x" in capsys.readouterr().out
