"""The ops package: importable lazily (tinyfast and its pure-Python parts work without the compiled
extension), and the clear ImportError when the extension is missing."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def run_without_the_extension(code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter in which `import tinyfast._C` fails, as without a build."""
    prelude = "import sys\nsys.modules['tinyfast._C'] = None  # import of tinyfast._C raises ImportError\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=REPOSITORY_ROOT,
        env={"PYTHONPATH": str(REPOSITORY_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_tinyfast_and_evaluation_import_without_the_extension():
    finished = run_without_the_extension(
        """
        import tinyfast
        import tinyfast.evaluation
        assert "tinyfast.ops" not in sys.modules
        print(tinyfast.__version__)
        """
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "0.1.0"


def test_the_ops_raise_a_clear_import_error_on_first_use():
    finished = run_without_the_extension(
        """
        import tinyfast
        try:
            tinyfast.ops.batched_nms
        except ImportError as error:
            print(error)
        else:
            raise SystemExit("no ImportError")
        """
    )
    assert finished.returncode == 0, finished.stderr
    assert "tinyfast's compiled ops are not built" in finished.stdout
    assert "pip install -e . --no-build-isolation" in finished.stdout


def test_the_ops_load_on_first_use():
    import tinyfast

    assert tinyfast.ops.batched_nms.__module__ == "tinyfast.ops.batched_nms"
    assert tinyfast.ops.point_nms.__module__ == "tinyfast.ops.point_nms"
    assert callable(tinyfast.ops.merge_tiles)
