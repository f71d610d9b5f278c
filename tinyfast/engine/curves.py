"""Training curves of a run folder from its `log.jsonl`: `curves.png` (losses, learning rate, AP50 tiny per
evaluation) and, when `tensorboard` is installed, the same scalars as TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

CURVES = "curves.png"
TENSORBOARD_DIR = "tensorboard"


def read_log(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """The training records (losses, lr per iteration) and the evaluation records (metrics) of a run's
    `log.jsonl`; a half-written last line (a killed run) is left out. ValueError when there is no log."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} does not exist: not a run folder of python -m tinyfast.train")
    steps, evaluations = [], []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "AP50_tiny" in record:
            evaluations.append(record)
        elif "lr" in record:
            steps.append(record)
    return steps, evaluations


def loss_names(steps: list[dict]) -> list[str]:
    names = {key for record in steps for key in record if key.startswith("loss")}
    return sorted(names, key=lambda name: (name != "loss", name))  # the total first


def plot_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draws `curves.png` (or `out`) for the run folder: every loss and the lr against the iteration, and
    AP50 tiny of each evaluation. Returns the file written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, evaluations = read_log(run_dir)
    if not steps:
        raise ValueError(f"{Path(run_dir) / 'log.jsonl'} holds no training iteration yet")
    figure, (losses, lr, ap) = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for name in loss_names(steps):
        points = [(r["iteration"], r[name]) for r in steps if name in r]
        losses.plot(*zip(*points, strict=True), label=name, linewidth=1.5 if name == "loss" else 0.8)
    losses.set(xlabel="iteration", ylabel="loss", title="losses", yscale="log")
    losses.legend(fontsize="small")
    lr.plot([r["iteration"] for r in steps], [r["lr"] for r in steps])
    lr.set(xlabel="iteration", ylabel="learning rate", title="learning rate")
    if evaluations:
        ap.plot([r["iteration"] for r in evaluations], [r["AP50_tiny"] for r in evaluations], marker="o")
    ap.set(xlabel="iteration", ylabel="AP50 tiny", title="AP50 tiny per evaluation", ylim=(0, 1))
    ap.set_xlim(0, max(r["iteration"] for r in steps))
    figure.suptitle(str(Path(run_dir).resolve().name))
    path = Path(out) if out else Path(run_dir) / CURVES
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def write_tensorboard(run_dir: str | Path) -> Path | None:
    """The log's scalars (losses, lr as `train/*`, metrics as `test/*`) as TensorBoard events in
    `run_dir/tensorboard` (rewritten from the log each time); None when tensorboard is not installed."""
    if not tensorboard_available():
        return None
    import shutil

    from torch.utils.tensorboard import SummaryWriter

    steps, evaluations = read_log(run_dir)
    folder = Path(run_dir) / TENSORBOARD_DIR
    shutil.rmtree(folder, ignore_errors=True)
    with SummaryWriter(str(folder)) as writer:
        for record in steps:
            for name in [*loss_names([record]), "lr"]:
                writer.add_scalar(f"train/{name}", record[name], record["iteration"])
        for record in evaluations:
            for name, value in record.items():
                if name[:2] in ("AP", "AR", "MR"):
                    writer.add_scalar(f"test/{name}", value, record["iteration"])
    return folder
