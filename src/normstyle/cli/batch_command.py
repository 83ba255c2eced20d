"""Many stylisations in one go: from a manifest (one JSON object per line: content, style, any
stylize option by its long name, an optional name), or from globs (--content/--style), on a pool
of local processes or on a Ray cluster (--engine ray; pip install 'normstyle[ray]'). Every job's
outcome goes to OUTDIR/results.jsonl; a rerun skips the jobs whose output already exists with
the same settings."""

from __future__ import annotations

import argparse

from normstyle.cli.common import positive_int, say

NAME = "batch"
HELP = "stylise many images: a manifest or globs, on local processes or a Ray cluster"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``batch``."""
    parser.add_argument("manifest", nargs="?", help="jobs, one JSON object per line (.jsonl)")
    parser.add_argument("-o", "--output", required=True, help="folder for the images and results")
    parser.add_argument("--content", help="instead of a manifest: content images (a glob)")
    parser.add_argument("--style", help="instead of a manifest: style images (a glob)")
    parser.add_argument(
        "--pair",
        action="store_true",
        help="with globs: the n-th content with the n-th style (default: every pair)",
    )
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="where jobs run [local]"
    )
    parser.add_argument(
        "--address", help="with --engine ray: an existing cluster (default: start a local one)"
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="jobs at once, the CPU threads shared out among them [1: measured fastest on 2 cores]",
    )
    parser.add_argument("--size", type=positive_int, help="default output long side for every job")
    parser.add_argument("--iterations", help="default iterations for every job (a number or auto)")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )


def handle(args: argparse.Namespace) -> int:
    """Run ``batch``: 0 if every job is done or skipped, 1 if any failed."""
    from normstyle.batch.manifest import jobs_from_globs, read_manifest
    from normstyle.batch.runner import run_batch, say_failures
    from normstyle.errors import OptionError

    globs = args.content is not None or args.style is not None
    if globs == (args.manifest is not None):
        raise OptionError("give a manifest, or --content and --style (globs), not both")
    if globs and (args.content is None or args.style is None):
        raise OptionError("with globs, give both --content and --style")
    if args.address and args.engine != "ray":
        raise OptionError("--address is for --engine ray")
    if args.engine == "ray":
        from normstyle.batch.engines import require_ray

        require_ray()
    defaults: dict = {}
    if args.size is not None:
        defaults["size"] = args.size
    if args.iterations is not None:
        text = args.iterations.strip()
        defaults["iterations"] = "auto" if text == "auto" else positive_int(text)
    if globs:
        jobs, invalid = jobs_from_globs(args.content, args.style, args.pair, defaults), []
    else:
        jobs, invalid = read_manifest(args.manifest, defaults)
    try:
        summary = run_batch(
            jobs, args.output, args.engine, args.workers, args.address, args.progress, invalid
        )
    except KeyboardInterrupt as stop:
        # Every finished job is in its PNG and in results.jsonl; a rerun picks up the rest.
        stop.detail = (  # type: ignore[attr-defined]
            f"the finished jobs are in {args.output} and its results.jsonl; the same command"
            " resumes the rest"
        )
        raise
    say_failures(summary)
    say(f"normstyle batch: {summary.line()}; results in {args.output}/results.jsonl")
    return 0 if summary.ok else 1
