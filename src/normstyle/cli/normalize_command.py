"""Compute per-filter mean activations on a folder of images and write the normalised network
(cascade method: exact, the network's function is unchanged up to the known per-channel
factors). Also --verify a saved network on other images, or --compare the cascade and naive
methods.
"""

from __future__ import annotations

import argparse

from normstyle.cli.common import (
    add_choice,
    add_folder_options,
    image_folder,
    require,
    say,
)
from normstyle.io.files import final_write
from normstyle.nets.files import check_network_targets, save_network, sidecar_path
from normstyle.normalization.calibrate import (
    calibration_table,
    compare_on_folder,
    normalize_folder,
    verify_network,
)
from normstyle.normalization.means import FilterMeans
from normstyle.registry import DEFAULT_WEIGHTS, get_weights, shipped_means

NAME = "normalize"
HELP = "rescale a network so every conv filter's mean activation is 1"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``normalize``."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--verify",
        metavar="NET",
        help="report the mean activations of a saved normalised network (.safetensors) on --images",
    )
    mode.add_argument(
        "--compare",
        action="store_true",
        help="per layer: drift of the naive method from original/μ and ReLU flips",
    )
    add_folder_options(parser, DEFAULT_WEIGHTS)
    add_choice(
        parser,
        "--method",
        ("cascade", "naive"),
        "cascade",
        "cascade (exact) or naive (per-layer division; changes the function)",
    )
    parser.add_argument(
        "--means", help="--compare: a means JSON (default: the shipped ones, else calibrate)"
    )
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip re-measuring the normalised network on the calibration images",
    )
    parser.add_argument(
        "-o", "--output", help="the normalised network (.safetensors; a .json beside it)"
    )


def handle(args: argparse.Namespace) -> int:
    """Dispatch to the chosen mode."""
    if args.verify:
        return verify(args)
    if args.compare:
        return compare(args)
    require(args.output is not None, "the normalised network needs -o NET.safetensors")
    require(args.means is None, "--means goes with --compare (normalize measures its own means)")
    # Both files, before the long part; neither may be the weights file it is made from.
    output = check_network_targets(args.output, [args.weights])
    result = normalize_folder(
        get_weights(args.weights),
        image_folder(args),
        args.pooling,
        args.method,
        args.check,
        args.progress,
    )
    with final_write():
        save_network(result.model, output, result.meta)
    say(
        f"{'layer':<9}{'filters':>8}{'dead':>6}{'μ min':>11}{'μ median':>11}{'μ max':>11}"
        f"{'max |μ−1| after':>17}"
    )
    for row in calibration_table(result.means, result.after):
        after = "—" if row.max_error_after is None else f"{row.max_error_after:.2e}"
        say(
            f"{row.layer:<9}{row.filters:>8}{row.dead:>6}{row.low:>11.4g}"
            f"{row.median:>11.4g}{row.high:>11.4g}{after:>17}"
        )
    for message in result.skipped:
        say(f"skipped: {message}")
    naive = "; naive method: NOT a normalised network, its function changed" * (
        args.method == "naive"
    )
    say(
        f"wrote {output} and {sidecar_path(output)} ({result.means.images} images,"
        f" {result.dead_count} dead filters{naive})"
    )
    return 0


def verify(args: argparse.Namespace) -> int:
    """Mean activations of a saved normalised network on other images."""
    result = verify_network(get_weights(args.verify), image_folder(args), args.progress)
    say(f"{result.images} images, short side {args.short_side}, pooling {result.pooling}")
    say(
        f"{'layer':<9}{'filters':>8}{'dead':>6}{'median |μ−1|':>14}"
        f"{'p95 |μ−1|':>12}{'max |μ−1|':>12}"
    )
    for row in result.rows:
        say(
            f"{row.layer:<9}{row.filters:>8}{row.dead:>6}{row.median_error:>14.3g}"
            f"{row.p95_error:>12.3g}{row.max_error:>12.3g}"
        )
    return 0


def compare(args: argparse.Namespace) -> int:
    """Cascade vs naive on the same images."""
    source = get_weights(args.weights)
    means = FilterMeans.load(args.means) if args.means else shipped_means(source)
    rows, images = compare_on_folder(source, image_folder(args), means, args.pooling, args.progress)
    say(f"{images} images; error = ‖net − original/μ‖ / ‖original/μ‖ after each ReLU")
    say(f"{'layer':<9}{'cascade error':>15}{'naive error':>13}{'naive ReLU flips':>18}")
    for row in rows:
        say(
            f"{row.layer:<9}{row.cascade_error:>15.2e}{row.naive_error:>13.3g}{row.naive_flips:>17.2%}"
        )
    return 0
