"""The lecture's experiments (init, depth, bn, norms, activations): each writes PNG figures and
a JSON of its numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from normstyle.cli.common import say, seed
from normstyle.errors import NormstyleError
from normstyle.io.files import check_folder, check_target, final_write
from normstyle.lab import EXPERIMENTS, OUTPUTS

NAME = "lab"
HELP = "reproduce the lecture's experiments (init, depth, bn, norms, activations)"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``lab``."""
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"], help="which experiment")
    parser.add_argument(
        "-o", "--output", default="lab", help="folder for figures and numbers [lab]"
    )
    parser.add_argument("--tiny", action="store_true", help="small sizes (seconds), for tests")
    parser.add_argument("--seed", type=seed, default=0, help="random seed [0]")


def handle(args: argparse.Namespace) -> int:
    """Run the chosen experiments. Every output is checked before any work; each experiment
    writes into a hidden staging folder and its files are moved into place together, so a
    failure or Ctrl-C leaves no partial experiment behind (nor a folder this run created)."""
    check_folder(args.output)  # the name as given: Path("") would be "."
    out = Path(args.output)
    chosen = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    if out.is_dir():
        for name in chosen:
            for file_name in OUTPUTS[name]:
                check_target(out / file_name)
    created = not out.exists()
    check_folder(out, create=True)
    try:
        for name in chosen:
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=out, prefix=f".lab-{name}-") as staging:
                try:
                    EXPERIMENTS[name](Path(staging), args.tiny, args.seed)
                except NormstyleError as error:  # name the user's folder, not the staging one
                    raise type(error)(str(error).replace(staging, str(out))) from None
                with final_write(finish=False):  # an experiment's files move together
                    for path in sorted(Path(staging).iterdir()):
                        os.replace(path, out / path.name)
            say(
                f"lab {name}: wrote {out}/{name}*.png and {out}/{name}.json"
                f" ({time.perf_counter() - start:.1f} s)"
            )
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    return 0
