"""Activation-statistics reports: per layer mean, std, fraction of exact zeros, and the
distribution of per-channel means — as JSON, Markdown and PNG figures. Works for any model
through :func:`summarize` on the statistics engine's output."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from normstyle.errors import OptionError
from normstyle.io.figures import png_bytes, subplots
from normstyle.io.files import atomic_write_many, check_folder, check_target, same_file
from normstyle.statistics.engine import RunningStats


@dataclass
class LayerSummary:
    """One layer's statistics over all images and positions."""

    layer: str
    channels: int
    values: int  # per channel
    mean: float
    std: float
    zero_fraction: float  # exact zeros among all values (dead ReLU outputs)
    dead_channels: int  # channels that were zero everywhere
    channel_mean_min: float
    channel_mean_median: float
    channel_mean_max: float
    channel_means: list[float]


def summarize(stats: dict[str, RunningStats]) -> list[LayerSummary]:
    """Summaries of statistics gathered with ``moments=2`` and ``track_zeros=True``."""
    rows = []
    for name, s in stats.items():
        means = s.mean
        rows.append(
            LayerSummary(
                layer=name,
                channels=means.numel(),
                values=s.count,
                mean=s.overall_mean,
                std=s.overall_std,
                zero_fraction=float(s.zero_fraction.mean()),
                dead_channels=int((s.zero_fraction == 1).sum()),
                channel_mean_min=float(means.min()),
                channel_mean_median=float(means.median()),
                channel_mean_max=float(means.max()),
                channel_means=means.tolist(),
            )
        )
    return rows


def markdown(rows: list[LayerSummary], title: str) -> str:
    """A Markdown table of the summaries."""
    lines = [
        f"## {title}",
        "",
        "| layer | channels | mean | std | zeros | dead ch. | ch. mean min | median | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.layer} | {r.channels} | {r.mean:.4g} | {r.std:.4g} | {r.zero_fraction:.1%} |"
            f" {r.dead_channels} | {r.channel_mean_min:.3g} | {r.channel_mean_median:.3g} |"
            f" {r.channel_mean_max:.3g} |"
        )
    return "\n".join(lines) + "\n"


REPORT_FILES = ("stats.json", "stats.md", "channel_means.png", "zero_fraction.png")


def figures(reports: dict[str, list[LayerSummary]]) -> dict[str, bytes]:
    """Two PNGs, one panel per report (e.g. original and normalised side by side): the
    distribution of per-channel means per layer (log scale) and the zero fraction per layer."""
    written = {}
    count = len(reports)
    fig, axes = subplots(1, count, figsize=(7 * count, 4.5), squeeze=False, sharey=False)
    for ax, (title, rows) in zip(axes[0], reports.items()):
        data = [[max(v, 1e-6) for v in r.channel_means] for r in rows]
        ax.boxplot(data, whis=(0, 100), widths=0.6)
        ax.set_yscale("log")
        ax.set_xticks(range(1, len(rows) + 1), [r.layer for r in rows], rotation=60, fontsize=8)
        ax.set_ylabel("mean activation of a channel (log scale)")
        ax.set_title(
            f"{title}: per-channel means per layer (box: quartiles, whiskers: min–max)", fontsize=9
        )
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    written["channel_means.png"] = png_bytes(fig)
    fig, axes = subplots(1, count, figsize=(7 * count, 4), squeeze=False)
    for ax, (title, rows) in zip(axes[0], reports.items()):
        ax.bar(range(len(rows)), [100 * r.zero_fraction for r in rows], color="tab:red")
        ax.set_xticks(range(len(rows)), [r.layer for r in rows], rotation=60, fontsize=8)
        ax.set_ylabel("exact zeros (% of all values)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{title}: fraction of dead (zero) outputs per layer", fontsize=9)
    fig.tight_layout()
    written["zero_fraction.png"] = png_bytes(fig)
    return written


def check_report_folder(folder: str | Path, images: str | Path | None = None) -> Path:
    """Check that ``folder`` can be created (if needed) and every report file written there —
    before the statistics are computed, not after — and that it is not the folder of
    ``images`` itself (its figures would be read as images by the next run)."""
    folder = check_folder(folder)
    if images is not None and Path(images).is_dir() and same_file(folder, images):
        raise OptionError(f"-o {folder} is the --images folder: choose another")
    if folder.is_dir():
        for name in REPORT_FILES:
            check_target(folder / name)
    return folder


def write_report(
    reports: dict[str, list[LayerSummary]], folder: str | Path, meta: dict[str, Any]
) -> list[Path]:
    """``stats.json``, ``stats.md`` and the figures in ``folder`` (created if needed): all of
    them, or none — and no folder left behind by a failed or interrupted write."""
    folder = Path(folder)
    payload = {**meta, "reports": {k: [asdict(r) for r in rows] for k, rows in reports.items()}}
    contents = {
        "stats.json": json.dumps(payload, indent=1).encode(),
        "stats.md": "\n".join(markdown(rows, title) for title, rows in reports.items()).encode(),
        **figures(reports),
    }
    created = not folder.exists()
    check_folder(folder, create=True)
    try:
        return atomic_write_many(
            [(folder / name, lambda h, data=data: h.write(data)) for name, data in contents.items()]
        )
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise
