"""Test a trained detector: `python -m tinyfast.test RUN_DIR|CHECKPOINT [k=v ...] [--policy during|after]`.

The model is a run folder (its `config.toml` and `latest.pth`) or a checkpoint (it carries its config);
`python -m tinyfast.test CONFIG CHECKPOINT [k=v ...]` tests a checkpoint with another config. Runs tiled
inference on the config's test images with the merge policy, writes the COCO results json and the metrics
next to the checkpoint (or into --out), and prints the evaluation table. Under
`torchrun --nproc_per_node N -m tinyfast.test ...` every process infers a share of the images.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tinyfast.engine import distributed
from tinyfast.engine.checkpoint import load_checkpoint
from tinyfast.engine.config import config_path, load_config, shipped_configs
from tinyfast.engine.evaluation import evaluate_model, format_metrics
from tinyfast.engine.predictor import resolve_model
from tinyfast.modeling.build import load_model, model_kind
from tinyfast.utils import cli


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m tinyfast.test", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run folder or a checkpoint (.pth), or a config (file or name)")
    parser.add_argument(
        "rest",
        nargs="*",
        metavar="[CHECKPOINT] key.sub=value",
        help="after a config: its checkpoint; overrides",
    )
    parser.add_argument("--policy", choices=("during", "after"), default=None, help="merge policy")
    parser.add_argument("--out", default=None, help="folder for results and metrics")
    parser.add_argument(
        "--trained-weights",
        action="store_true",
        help="of a run that averaged its weights (train.ema_decay): the optimiser's, not the average",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_intermixed_args(argv)
    if Path(args.model).is_dir() or Path(args.model).suffix == ".pth":
        config, checkpoint, state = resolve_model(args.model, args.rest)
    else:
        try:
            config_path(args.model)
        except ValueError:
            raise ValueError(
                f"{args.model} is neither a run folder, a checkpoint (.pth) nor a config (a file or the "
                f"name of a shipped one: {', '.join(shipped_configs())})"
            ) from None
        if not args.rest or "=" in args.rest[0]:
            raise ValueError(f"{args.model} is a config: give the checkpoint to test after it")
        checkpoint, overrides = args.rest[0], args.rest[1:]
        config, state = load_config(args.model, overrides), None
    out_dir = Path(args.out) if args.out else Path(checkpoint).parent
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    if state is None:  # read after the cheap checks of the arguments
        state = load_checkpoint(Path(checkpoint))
    if args.trained_weights:
        if "trained_model" not in state:
            raise ValueError(f"--trained-weights: {checkpoint} holds no average (train.ema_decay was 0)")
        state = {**state, "model": state["trained_model"]}
    model = load_model(config["model"], state, str(checkpoint))
    policy = args.policy or config["test"]["policy"]
    with distributed.launch(config["train"]["device"]) as processes:
        metrics = evaluate_model(
            model,
            config,
            out_dir,
            policy,
            progress=not args.no_progress and processes.is_main,
            images_per_batch=config["test"]["images_per_batch"],
            device=processes.device,
        )
    if processes.is_main:
        print(format_metrics(metrics, model_kind(config["model"])))
        print(f"results and metrics ({policy}): {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
