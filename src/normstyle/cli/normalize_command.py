"""``normstyle normalize``: compute per-filter means and write a normalised network; ``--verify``
a saved one on other images; ``--compare`` the cascade and naive methods."""

from __future__ import annotations

import argparse

from normstyle.calibrate import calibrate, image_batches, image_files, measure_means
from normstyle.cli.common import final_write, positive_int, require, say, short_side
from normstyle.errors import InputError, OptionError
from normstyle.netfile import check_network_targets, save_network, sidecar_path
from normstyle.normalize import FilterMeans, check_means, compare_methods, normalize
from normstyle.weights import DEFAULT_WEIGHTS, NORMALIZED_MEANS_FILE, WEIGHT_SOURCES, get_weights


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``normalize`` sub-command."""
    parser = subparsers.add_parser(
        "normalize",
        help="rescale a network so every conv filter's mean activation is 1",
        description="Compute per-filter mean activations on a folder of images and write the"
        " normalised network (cascade method: exact, the network's function is unchanged up to"
        " the known per-channel factors). Also --verify a saved network, or --compare methods.",
    )
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
    parser.add_argument(
        "--weights", default=DEFAULT_WEIGHTS, help=f"weight source id or file [{DEFAULT_WEIGHTS}]"
    )
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument("--size", type=short_side, default=256, help="image short side in px [256]")
    parser.add_argument("--limit", type=positive_int, help="use at most N images (sorted by path)")
    parser.add_argument(
        "--pooling",
        choices=("max", "avg"),
        default="max",
        help="pooling during calibration [max: the network as trained]",
    )
    parser.add_argument(
        "--method",
        choices=("cascade", "naive"),
        default="cascade",
        help="cascade (exact) or naive (per-layer division; changes the function)",
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
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    parser.add_argument(
        "-o", "--output", help="the normalised network (.safetensors; a .json beside it)"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Dispatch to the chosen mode."""
    if args.verify:
        return verify(args)
    if args.compare:
        return compare(args)
    require(args.output is not None, "the normalised network needs -o NET.safetensors")
    output = check_network_targets(args.output)  # both files, before the long part
    source = get_weights(args.weights)
    require(not source.meta.get("normalized"), f"weights '{args.weights}' are already normalised")
    means, skipped = calibrate(
        source, args.images, args.size, args.limit, args.pooling, args.progress
    )
    model = normalize(source.build(pooling=args.pooling), means, args.method)
    after = None
    if args.check:
        files = image_files(args.images, args.limit)
        after, _ = measure_means(
            model, files, source.preprocessing, args.size, args.progress, "check"
        )
    meta = {
        **means.to_json(),
        # Only the cascade keeps the network's function (features = original/μ); the naive
        # division gives a different network, which must not pass for a normalised one.
        "normalized": args.method == "cascade",
        "function_preserving": args.method == "cascade",
        "method": args.method,
        "preprocessing": source.preprocessing.name,
    }
    with final_write():
        save_network(model, output, meta)
    print_calibration(means, after)
    for message in skipped:
        say(f"skipped: {message}")
    say(
        f"wrote {output} and {sidecar_path(output)} ({means.images} images,"
        f" {sum(len(d) for d in means.dead().values())} dead filters"
        + (
            "; naive method: NOT a normalised network, its function changed)"
            if args.method == "naive"
            else ")"
        )
    )
    return 0


def print_calibration(means: FilterMeans, after: FilterMeans | None) -> None:
    """The per-layer table: means before, and |μ − 1| after normalisation."""
    checks = {row.layer: row for row in check_means(after, means.dead())} if after else {}
    say(
        f"{'layer':<9}{'filters':>8}{'dead':>6}{'μ min':>11}{'μ median':>11}{'μ max':>11}"
        f"{'max |μ−1| after':>17}"
    )
    for name, mu in means.means.items():
        live = mu[mu > 0]
        live = live if live.numel() else mu
        check = f"{checks[name].max_error:>17.2e}" if name in checks else f"{'—':>17}"
        say(
            f"{name:<9}{mu.numel():>8}{int((mu == 0).sum()):>6}{float(live.min()):>11.4g}"
            f"{float(live.median()):>11.4g}{float(live.max()):>11.4g}{check}"
        )


def verify(args: argparse.Namespace) -> int:
    """Mean activations of a saved normalised network on other images."""
    source = get_weights(args.verify)
    if source.meta.get("method") == "naive":
        raise OptionError(
            f"{args.verify}: a naive rescaling, not a normalised network (its function changed)"
        )
    require(
        bool(source.meta.get("normalized")),
        f"{args.verify}: not a normalised network (no metadata)",
    )
    pooling = source.meta.get("pooling", "max")
    require(pooling in ("max", "avg"), f"{args.verify}: metadata names pooling {pooling!r}")
    dead = dead_filters(source.meta.get("dead", {}), str(args.verify))
    files = image_files(args.images, args.limit)
    means, skipped = measure_means(
        source.build(pooling=pooling),
        files,
        source.preprocessing,
        args.size,
        args.progress,
        "verify",
    )
    say(f"{len(files) - len(skipped)} images, short side {args.size}, pooling {pooling}")
    say(
        f"{'layer':<9}{'filters':>8}{'dead':>6}{'median |μ−1|':>14}"
        f"{'p95 |μ−1|':>12}{'max |μ−1|':>12}"
    )
    for row in check_means(means, dead):
        say(
            f"{row.layer:<9}{row.filters:>8}{row.dead:>6}{row.median_error:>14.3g}"
            f"{row.p95_error:>12.3g}{row.max_error:>12.3g}"
        )
    return 0


def dead_filters(value: object, where: str) -> dict[str, list[int]]:
    """The ``dead`` entry of a network's metadata: layer name → filter indices."""
    if not isinstance(value, dict) or not all(
        isinstance(layer, str)
        and isinstance(indices, list)
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)
        for layer, indices in value.items()
    ):
        raise InputError(f"{where}: its metadata's 'dead' is not a map of layers to filter indices")
    return value  # type: ignore[return-value]


def compare(args: argparse.Namespace) -> int:
    """Cascade vs naive on the same images."""
    source = get_weights(args.weights)
    given = FilterMeans.load(args.means) if args.means else None
    files = image_files(args.images, args.limit)
    if given is not None:
        means = given
    elif source.id in WEIGHT_SOURCES and f"{source.id}-normalized" in WEIGHT_SOURCES:
        means = FilterMeans.load(NORMALIZED_MEANS_FILE)
    else:
        means, _ = calibrate(
            source, args.images, args.size, args.limit, args.pooling, args.progress
        )
    model = source.build(pooling=args.pooling)
    # Three networks side by side, every conv and ReLU output of each kept: ~9 kB per pixel.
    batches = image_batches(files, source.preprocessing, args.size, bytes_per_pixel=9000)
    rows = compare_methods(model, means, batches)
    say(f"{len(files)} images; error = ‖net − original/μ‖ / ‖original/μ‖ after each ReLU")
    say(f"{'layer':<9}{'cascade error':>15}{'naive error':>13}{'naive ReLU flips':>18}")
    for row in rows:
        say(
            f"{row.layer:<9}{row.cascade_error:>15.2e}{row.naive_error:>13.3g}{row.naive_flips:>17.2%}"
        )
    return 0
