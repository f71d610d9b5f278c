"""Draw a run's training curves: `python -m tinyfast.plot RUN_DIR [--out FILE]`.

Writes RUN_DIR/curves.png (losses, learning rate, AP50 tiny per evaluation) from RUN_DIR/log.jsonl, and the
same scalars as TensorBoard events in RUN_DIR/tensorboard when tensorboard is installed.
"""

from __future__ import annotations

import sys

from tinyfast.engine.curves import plot_curves, write_tensorboard
from tinyfast.utils import cli


@cli.command
def main(argv: list[str]) -> int:
    parser = cli.ArgumentParser(prog="python -m tinyfast.plot", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run folder of python -m tinyfast.train (with log.jsonl)")
    parser.add_argument("--out", default=None, help="the picture to write (default RUN_DIR/curves.png)")
    args = parser.parse_args(argv)
    path = plot_curves(args.run_dir, args.out)
    events = write_tensorboard(args.run_dir)
    print(f"training curves: {path}" + (f"; TensorBoard events: {events}" if events else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
