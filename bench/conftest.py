import pytest

from tinyfast.utils.machine import machine

_SUMMARY_LINES = pytest.StashKey[list]()


@pytest.fixture
def summary_line(request):
    """Adds a line to the end-of-run summary (benchmark prints are otherwise captured)."""
    lines = request.config.stash.setdefault(_SUMMARY_LINES, [])
    return lines.append


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(_SUMMARY_LINES, [])
    if lines:
        terminalreporter.section("tinyfast benchmarks")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_benchmark_update_machine_info(config, machine_info):
    """The saved json names the machine as the report prints it: CPU model, cores, torch, GPU."""
    machine_info["tinyfast"] = machine()
