"""Where a run stands and what it has written: the position stored in every checkpoint, the json log of the
run folder, and what resuming from a checkpoint checks and restores."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

RESUME_KEYS = ("model", "optimizer", "scaler", "rng", "world_size", "batch_size")


@dataclasses.dataclass
class Position:
    """Where a run stands; stored in every checkpoint so that a resumed run skips exactly what it did."""

    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # batches of the current epoch done (trained on or skipped)
    iteration: int = 0  # batches done in all
    skipped_batches: int = 0  # batches skipped for a non-finite loss
    skipped_images: int = 0  # images left out because they could not be read


def resume_position(state: dict, path: Path, world_size: int, batch_size: int) -> Position:
    """The position of the checkpoint `state` (read from `path`) once it is known that this run of
    `world_size` processes x `batch_size` images can continue from it; ValueError naming `path` if not."""
    fields = [field.name for field in dataclasses.fields(Position)]
    missing = [key for key in (*RESUME_KEYS, *fields) if key not in state]
    if missing:
        raise ValueError(f"{path} cannot be resumed: it has no {', '.join(missing)}")
    position = Position(**{name: state[name] for name in fields})
    total_batch = world_size * batch_size
    saved_total = state["world_size"] * state["batch_size"]
    if position.batch_in_epoch and total_batch != saved_total:
        raise ValueError(
            f"{path} was written in the middle of an epoch by {state['world_size']} process(es) x "
            f"{state['batch_size']} images; resume it with the same total batch ({saved_total}, now "
            f"{total_batch}) or from an epoch_N.pth"
        )
    return position


class RecordLog:
    """`log.jsonl` of the run folder: one json record per line, written by rank 0 only."""

    def __init__(self, path: Path, enabled: bool):
        self.file = path.open("a") if enabled else None

    def write(self, record: dict) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self.file:
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def truncate_log(path: Path, iteration: int) -> None:
    """Drops the records of `log.jsonl` at `path` of iterations after `iteration`: the resumed run writes
    them again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed process, half written
            continue
        if record["iteration"] <= iteration:
            kept.append(f"{line}\n")
    path.write_text("".join(kept))
