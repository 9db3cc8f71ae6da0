"""`torchrun --nproc_per_node=N -m aselect_core.train --data ... --out ...`: the distributed entry point."""
import argparse
import sys

from aselect_core.train.args import add_train_arguments, config_from_args
from aselect_core.train.config import ConfigError
from aselect_core.train.loop import TrainingError, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aselect_core.train", description="Train a DiT (DDP-ready).")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        print(train(config_from_args(args), progress=not args.no_progress))
    except (ConfigError, TrainingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
