"""List the weight sources (weights list) and inspect one, or a weights file (weights show ID)."""

from __future__ import annotations

import argparse

from normstyle.cli.common import say
from normstyle.nets import VGG
from normstyle.nets.source import WeightSource, load_into, parameter_table
from normstyle.registry import WEIGHT_SOURCES, describe, get_weights

NAME = "weights"
HELP = "list and inspect weight sources"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The actions of ``weights``, each with its own handler."""
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(parser)
    )
    actions.add_parser("list", help="all registered weight sources").set_defaults(
        handler=list_sources
    )
    show = actions.add_parser(
        "show", help="layers, parameters, sha256 and preprocessing of one source"
    )
    show.add_argument("id", help="a weight source id (see 'weights list') or a weights file")
    show.set_defaults(handler=show_source)


def list_sources(args: argparse.Namespace) -> int:
    """Print one row per registered source."""
    rows = [("id", "arch", "head", "input", "offline", "description")]
    for source in WEIGHT_SOURCES.values():
        rows.append(
            (
                source.id,
                source.arch,
                "yes" if source.has_head else "no",
                source.preprocessing.name,
                "yes" if source.available_offline() else "no",
                source.description,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5])
    return 0


def show_file_contents(source: WeightSource) -> int:
    """A local file: the tensors it holds (decoded, in our naming), then whether they fit the
    architecture its layer names suggest — what is in the file, not what should be."""
    state = source.load_state_dict()
    say(f"\n{'tensor':<16} {'shape':<20} {'dtype':<9} {'values':>12}")
    for key, value in state.items():
        shape = "×".join(map(str, value.shape)) or "scalar"
        dtype = str(value.dtype).removeprefix("torch.")
        say(f"{key:<16} {shape:<20} {dtype:<9} {value.numel():>12,}")
    say(f"{'total':<16} {'':<20} {'':<9} {sum(v.numel() for v in state.values()):>12,}")
    # Raises InputError (exit 1, one line) naming the first tensor that does not fit.
    load_into(VGG(source.arch, head=source.has_head), state, source=source.id)
    say(f"fits {source.arch}" + (" with classifier head" if source.has_head else ""))
    return 0


def show_source(args: argparse.Namespace) -> int:
    """Print everything about one source, without downloading it."""
    source = get_weights(args.id)
    for key, value in describe(source):
        say(f"{key + ':':<15}{value}")
    if source.id not in WEIGHT_SOURCES:
        return show_file_contents(source)
    table = parameter_table(source)
    say(f"\n{'layer':<8} {'weight shape':<20} {'parameters':>12}")
    for name, shape, count in table:
        say(f"{name:<8} {'×'.join(map(str, shape)):<20} {count:>12,}")
    say(f"{'total':<8} {'':<20} {sum(row[2] for row in table):>12,}")
    return 0
