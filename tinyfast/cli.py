"""The `tinyfast` console command: `tinyfast SUBCOMMAND [arguments]`, the same as `python -m tinyfast.X`.

Each subcommand is a module's `main(argv)`, imported only when it runs.
"""

from __future__ import annotations

import importlib
import sys

import tinyfast

COMMANDS = {
    "train": ("tinyfast.train", "train a detector from a config"),
    "test": ("tinyfast.test", "test a run folder or checkpoint on its config's test images"),
    "predict": ("tinyfast.predict", "detect persons in your own images"),
    "refine": ("tinyfast.refine", "refine point annotations with a trained CPR"),
    "evaluate": ("tinyfast.evaluate", "score a COCO results json with the TinyPerson evaluation"),
    "convert": ("tinyfast.data.convert", "convert YOLO labels or cut corner images"),
    "study": ("tinyfast.study", "the merge-policy study of a model; scale-match: the Scale Match study"),
    "plot": ("tinyfast.plot", "draw a run folder's training curves (curves.png)"),
    "synthetic": ("tinyfast.data.synthetic", "generate the synthetic TinyPerson-like set"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(
        [
            "usage: tinyfast SUBCOMMAND [arguments]  (tinyfast SUBCOMMAND --help for its own;",
            "       --debug after a subcommand shows the traceback of an error)",
            "",
            *lines,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"tinyfast {tinyfast.__version__}")
        return 0
    name, *rest = argv
    if name not in COMMANDS:
        print(f"error: unknown subcommand {name!r} (one of {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        print(f"error: tinyfast {name} is not part of this installation ({module_name})", file=sys.stderr)
        return 2
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
