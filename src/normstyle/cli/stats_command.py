"""Mean, std, fraction of exact zeros and the distribution of per-channel means for each
selected layer of a network on a folder of images; writes stats.json, stats.md and PNG figures.
"""

from __future__ import annotations

import argparse

from normstyle.cli.common import add_choice, add_folder_options, image_folder, say
from normstyle.errors import OptionError
from normstyle.io.files import final_write
from normstyle.registry import DEFAULT_WEIGHTS, compared_networks, get_weights
from normstyle.statistics.diagnostics import folder_reports
from normstyle.statistics.report import check_report_folder, markdown, write_report

NAME = "stats"
HELP = "per-layer activation statistics of a network on a folder of images"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``stats``."""
    add_folder_options(parser, DEFAULT_WEIGHTS)
    parser.add_argument(
        "--layers", default="relu*", help="comma-separated layer names or glob patterns [relu*]"
    )
    add_choice(
        parser, "--compare", ("normalized",), None, "also report the mean-normalised network"
    )
    parser.add_argument("-o", "--output", required=True, help="report folder (created if needed)")


def handle(args: argparse.Namespace) -> int:
    """Run ``stats``."""
    check_report_folder(args.output, args.images)  # before the work, not after it
    source = get_weights(args.weights)
    images = image_folder(args)
    files = images.files()
    layers = [part.strip() for part in args.layers.split(",") if part.strip()]
    if not layers:
        raise OptionError("--layers names no layer (e.g. relu* or relu1_1,relu5_1)")
    models = compared_networks(
        source,
        args.pooling,
        normalized=args.compare == "normalized",
        images=images,
        progress=args.progress,
    )
    skipped: list[str] = []
    reports = folder_reports(models, files, source.preprocessing, args.short_side, layers, skipped)
    meta = {
        "weights": source.id,
        "images": len(files) - len(skipped),
        "skipped": len(skipped),
        "short_side": args.short_side,
        "pooling": args.pooling,
    }
    with final_write():
        paths = write_report(reports, args.output, meta)
    for title, rows in reports.items():
        say(markdown(rows, title))
    for message in skipped:
        say(f"skipped: {message}")
    say("wrote " + ", ".join(str(p) for p in paths))
    return 0
