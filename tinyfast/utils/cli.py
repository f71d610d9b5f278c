"""What every `python -m tinyfast.*` command does with bad input and faults: one line on stderr and a
non-zero exit, never a traceback (unless `--debug` is given).

Exit codes: 0 success, 1 a runtime failure (a full disk, a diverged run, an unexpected error),
2 a usage or input error (a bad argument, a bad config, a missing or corrupt file), 130 interrupted
(Ctrl-C). A command is `@cli.command def main(argv)` with a `cli.ArgumentParser`.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable, Sequence

DEBUG_FLAG = "--debug"
USAGE_ERROR, RUNTIME_ERROR, INTERRUPTED = 2, 1, 130


class UsageError(ValueError):
    """A command-line argument that the parser rejects."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors raised as UsageError (one line, naming the argument) instead of a usage
    block and SystemExit, and with the `--debug` flag that `run` reads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("add_help", True):  # every parser with a --help, sub-commands' included
            self.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error")

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _parse_number(text: str, kind: type, minimum: float, strict: bool, what: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    return _parse_number(text, int, 0, True, "an integer >= 1")


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return _parse_number(text, int, 0, False, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    return _parse_number(text, float, 0.0, True, "a finite number > 0")


def _exit_code(error: BaseException) -> int:
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(error, ValueError | FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return USAGE_ERROR  # UsageError, DataError, a bad config or checkpoint, a missing input file
    return RUNTIME_ERROR


def _one_line(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, ValueError | OSError | FloatingPointError):
        return text
    return f"unexpected {type(error).__name__}: {text} (rerun with {DEBUG_FLAG} for the traceback)"


def run(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Calls `main(argv)` (argv defaults to `sys.argv[1:]`) and returns its exit code; an exception becomes
    `error: <one line>` on stderr and exit code 2 (ValueError: usage or input) or 1 (anything else).
    With `--debug` among the arguments the exception propagates with its traceback. Under torchrun only
    rank 0 prints (every rank exits with the code)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = main(argv)
    except SystemExit as exit_:  # --help, --version: argparse's own exits
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else USAGE_ERROR
    except (Exception, KeyboardInterrupt) as error:
        if DEBUG_FLAG in argv:
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {_one_line(error)}", file=sys.stderr)
        return _exit_code(error)
    return 0 if code is None else code


def command(main: Callable[[list[str]], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Decorator of a command's `main(argv)`: the decorated `main(argv=None)` runs it through `run`."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        return run(main, argv)

    return wrapped
