"""``normstyle stats``: activation statistics of a network on a folder of images, as a report."""

from __future__ import annotations

import argparse

from normstyle.calibrate import image_batches, image_files, measure_means
from normstyle.cli.common import final_write, positive_int, say, short_side
from normstyle.diagnostics import activation_report
from normstyle.normalize import normalize
from normstyle.report import check_report_folder, markdown, write_report
from normstyle.weights import DEFAULT_WEIGHTS, WEIGHT_SOURCES, get_weights


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``stats`` sub-command."""
    parser = subparsers.add_parser(
        "stats",
        help="per-layer activation statistics of a network on a folder of images",
        description="Mean, std, fraction of exact zeros and the distribution of per-channel"
        " means for each selected layer; writes stats.json, stats.md and PNG figures.",
    )
    parser.add_argument(
        "--weights", default=DEFAULT_WEIGHTS, help=f"weight source id or file [{DEFAULT_WEIGHTS}]"
    )
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument(
        "--layers", default="relu*", help="comma-separated layer names or glob patterns [relu*]"
    )
    parser.add_argument("--size", type=short_side, default=256, help="image short side in px [256]")
    parser.add_argument("--limit", type=positive_int, help="use at most N images")
    parser.add_argument("--pooling", choices=("max", "avg"), default="max", help="[max]")
    parser.add_argument(
        "--compare",
        choices=("normalized",),
        help="also report the mean-normalised network, side by side",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    parser.add_argument("-o", "--output", required=True, help="report folder (created if needed)")
    parser.set_defaults(handler=handle)


# A forward pass plus the centred and squared copies the variance needs (float32, 64 channels
# at full resolution): ~1.5 kB per pixel.
STATS_BYTES_PER_PIXEL = 1500


def handle(args: argparse.Namespace) -> int:
    """Run ``stats``."""
    check_report_folder(args.output)  # before the work, not after it
    source = get_weights(args.weights)
    files = image_files(args.images, args.limit)
    layers = [part.strip() for part in args.layers.split(",") if part.strip()]
    model = source.build(pooling=args.pooling)
    skipped: list[str] = []
    batches = image_batches(
        files, source.preprocessing, args.size, skipped, bytes_per_pixel=STATS_BYTES_PER_PIXEL
    )
    reports = {source.id: activation_report(model, batches, layers)}
    if args.compare == "normalized":
        shipped = WEIGHT_SOURCES.get(f"{source.id}-normalized")
        if shipped is not None:
            normalized, label = shipped.build(pooling=args.pooling), shipped.id
        else:  # calibrate on these images, then normalise
            means, _ = measure_means(model, files, source.preprocessing, args.size, args.progress)
            normalized, label = normalize(model, means), f"{source.id} normalised on these images"
        batches = image_batches(
            files, source.preprocessing, args.size, bytes_per_pixel=STATS_BYTES_PER_PIXEL
        )
        reports[label] = activation_report(normalized, batches, layers)
    meta = {
        "weights": source.id,
        "images": len(files) - len(skipped),
        "skipped": len(skipped),
        "short_side": args.size,
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
