"""bench.report: the table of ratios, its caption (the machine) and the plot, from a benchmark json; the
detection benchmarks' table."""

import json

from bench.report import detection_table, main, measured, table, write_detection_report

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


def test_detection_table_one_line_per_row_fractions_and_speeds_empty_where_missing(tmp_path):
    rows = [
        {"name": "Adap FCOS", "AP50_tiny": 0.31234, "AP50_tiny1": 0.1, "AP50_tiny2": 0.2, "AP50_tiny3": 0.3,
         "AP50_small": 0.4, "AP50_all": 0.5, "AR50_tiny": 0.66666, "training_images_per_s": 123.456,
         "inference_images_per_s": 7.04, "iterations": 10},
        {"name": "yolov8n, whole images at 640", "AP50_tiny": 0.0, "AP50_small": -1.0,
         "inference_images_per_s": 0.0123},
    ]  # fmt: skip
    lines = detection_table(rows).splitlines()
    assert lines[0] == (
        "|  | AP50 tiny | tiny1 | tiny2 | tiny3 | small | AP50 all | AR50 tiny | training images/s | "
        "inference images/s |"
    )
    assert lines[1] == "|" + "---|" * 10
    assert lines[2] == "| Adap FCOS | 0.312 | 0.100 | 0.200 | 0.300 | 0.400 | 0.500 | 0.667 | 123 | 7.04 |"
    assert lines[3] == "| yolov8n, whole images at 640 | 0.000 |  |  |  | n/a |  |  |  | 0.0123 |"
    markdown = write_detection_report(rows, tmp_path, "table", "A note.")
    assert markdown.splitlines()[0].startswith("Measured ") and markdown.splitlines()[0].endswith(". A note.")
    assert (tmp_path / "table.md").read_text() == markdown
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["rows"] == rows and saved["caption"] == markdown.splitlines()[0]
    assert "cpu" in saved["machine"]
