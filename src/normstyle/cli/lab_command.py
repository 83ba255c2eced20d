"""``normstyle lab EXPERIMENT -o DIR``: the lecture experiments as figures and numbers."""

from __future__ import annotations

import argparse
import time

from normstyle.cli.common import seed
from normstyle.images import check_folder
from normstyle.lab import EXPERIMENTS


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``lab`` sub-command."""
    parser = subparsers.add_parser(
        "lab",
        help="reproduce the lecture's experiments (init, depth, bn, norms, activations)",
        description="Each experiment writes PNG figures and a JSON of its numbers.",
    )
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"], help="which experiment")
    parser.add_argument(
        "-o", "--output", default="lab", help="folder for figures and numbers [lab]"
    )
    parser.add_argument("--tiny", action="store_true", help="small sizes (seconds), for tests")
    parser.add_argument("--seed", type=seed, default=0, help="random seed [0]")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the chosen experiments."""
    out = check_folder(args.output)  # before the experiments, not after them
    chosen = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    for name in chosen:
        start = time.perf_counter()
        EXPERIMENTS[name](out, args.tiny, args.seed)
        print(
            f"lab {name}: wrote {out}/{name}*.png and {out}/{name}.json"
            f" ({time.perf_counter() - start:.1f} s)"
        )
    return 0
