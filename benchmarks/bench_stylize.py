"""Stylisation speed and quality against pastiche, on the shared photos and paintings.

    make bench                                  # the full protocol (about an hour on 2 cores)
    .venv/bin/python benchmarks/bench_stylize.py --quick    # a smoke run (minutes)

For each pair (tubingen × starry_night, golden_gate × the_scream) and size (256, 512 px):
- s/iteration, median of timed steps after warm-up: pastiche 1.6.0 (configured as close to our
  defaults as its options allow: same layers, average pooling, white-noise start, L-BFGS, the same
  ratio of content to style weight per layer), our fp32 path and our auto-precision path;
- the total loss at equal iterations (100, 300) of each, all re-evaluated with our fp32 loss
  (our default objective: normalised VGG-19, paper formulas), and the time our auto path needs
  to reach the loss pastiche has at 300 iterations; fp32 runs on to 500 iterations at 512 px;
- at 512 px the auto run is our default configuration run to its default length: its wall time
  and fp32 loss against the fp32 path's at the same length;
- peak RSS of a few iterations at 1024 and 2048 px, each in a fresh process.
Results: benchmarks/results/stylize.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, median, table, write_results
from normstyle.io.resize import load_rgb
from normstyle.registry import for_stylization
from normstyle.runtime.precision import resolve_runtime
from normstyle.style.options import StyleOptions
from normstyle.style.precision import evaluate
from normstyle.style.targets import build_loss
from normstyle.style.transfer import run

PAIRS = {
    "tubingen×starry_night": ("photos/tubingen.jpg", "art/starry_night.jpg"),
    "golden_gate×the_scream": ("photos/golden_gate.jpg", "art/the_scream.jpg"),
}
CHECKPOINTS = (100, 300)


class Fp32Judge:
    """Our default objective in fp32, for images of one content/style/size."""

    def __init__(self, content: Path, style: Path, size: int) -> None:
        self.options = StyleOptions(long_side=size, progress=False)
        source = for_stylization(self.options.weights)
        self.prep = source.preprocessing
        self.runtime = resolve_runtime("cpu", "fp32")
        self.model = source.build(pooling=self.options.pooling).to(
            memory_format=torch.channels_last
        )
        self.content = load_rgb(content, size)
        style_rgb = load_rgb(style, size)
        self.loss = build_loss(
            self.model, self.prep, self.content, [style_rgb], [1.0], self.options, self.runtime
        )

    def __call__(self, x: torch.Tensor) -> float:
        """Total loss of an image given in Caffe input space (ours and pastiche's)."""
        if x.shape[2:] != self.content.shape[2:]:
            x = torch.nn.functional.interpolate(x, size=self.content.shape[2:], mode="bicubic")
        return float(evaluate(self.model, self.loss, x.float(), self.runtime).total)


def ours(
    content: Path,
    style: Path,
    size: int,
    precision: str,
    iterations: int,
    judge: Fp32Judge,
    checkpoints=CHECKPOINTS,
    target: float | None = None,
    **extra,
) -> dict:
    """Run our stylisation, timing every step and judging the checkpoints in fp32. The time to
    reach ``target`` is optimisation time (setup excluded), checked every 10 iterations."""
    times, judged, reached = [], {}, None
    judging = [0.0]
    last = [time.perf_counter()]
    # Our default, iterations per level aside; one level unless extra says otherwise.
    options = StyleOptions(
        long_side=size, iterations=iterations, precision=precision, seed=0, progress=False, **extra
    )

    def on_step(iteration: int, x: torch.Tensor, terms) -> None:
        nonlocal reached
        now = time.perf_counter()
        times.append(now - last[0])  # the step alone: judging is not timed
        if iteration in checkpoints:
            judged[iteration] = judge(x.detach().cpu())
        checking = target is not None and reached is None and iteration % 10 == 0
        if checking and judge(x.detach().cpu()) <= target:
            reached = {"iteration": iteration, "seconds": sum(times)}
        last[0] = time.perf_counter()
        judging[0] += last[0] - now

    result = run(content, style, options, on_step=on_step)
    final = judge(result.tensor)
    warm = times[2:] if len(times) > 4 else times
    return {
        "s_per_iter": median(warm),
        "losses": judged,
        "final_loss": final,
        "seconds": result.seconds - judging[0],  # wall time of the run, judging excluded
        "reached_pastiche": reached,
        "runtime": result.runtime,
        "iterations": iterations,
    }


def pastiche(
    content: Path,
    style: Path,
    size: int,
    iterations: int,
    judge: Fp32Judge,
    checkpoints=CHECKPOINTS,
) -> dict:
    """pastiche 1.6.0 with our layers, pooling, start and loss ratios (see the module docstring)."""
    from pastiche.pastiche import PasticheArtist

    layers = [f"block{b}_relu1" for b in range(1, 6)]
    torch.manual_seed(0)
    # Our loss per layer is ½·Σ(F−P)² + β·0.2/(4N²)·Σ(ΔG/M)²; pastiche's is w_c·mean((F−P)²) +
    # w_s·mean((ΔG/M)²). With β = 10·N_c·M_c (our default) matching ratios gives w_c = w_s = 1.
    artist = PasticheArtist(
        str(content),
        [str(style)],
        pooling="avg",
        optimizer="lbfgs",
        random_init=True,
        device="cpu",
        content_layers=["block4_relu2"],
        style_layers=layers,
        content_layer_weights=[1.0],
        style_layer_weights=[1.0] * 5,
        content_weight=1.0,
        style_weights=[1.0],
        size=size,
        style_size=size,
    )
    times, judged = [], {}
    for iteration in range(1, iterations + 1):
        begin = time.perf_counter()
        artist.draw()
        times.append(time.perf_counter() - begin)
        if iteration in checkpoints:
            judged[iteration] = judge(artist.pastiche.detach())
    return {"s_per_iter": median(times[2:]), "losses": judged}


def peak_rss(size: int, iterations: int = 2) -> float:
    """Peak resident memory (GB) of a fresh process running a few default iterations."""
    code = (
        "import resource, normstyle;"
        f"normstyle.stylize('builtin:grace_hopper', 'builtin:swirls', long_side={size},"
        f" iterations={iterations}, progress=False, seed=0);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations, 256 px, one pair")
    args = parser.parse_args()
    quick = args.quick
    sizes = (256,) if quick else (256, 512)
    default_iterations = StyleOptions().iterations
    results, rows = [], []
    for pair, (content_rel, style_rel) in PAIRS.items():
        content, style = DATA / content_rel, DATA / style_rel
        for size in sizes:
            judge = Fp32Judge(content, style, size)
            # The full protocol for every pair at 256 px and for tubingen at 512 px; speed only
            # (12 steps) for golden_gate at 512 px, to keep the benchmark near an hour here.
            full = not quick and (size == 256 or pair.startswith("tubingen"))
            n = max(CHECKPOINTS) if full else (6 if quick else 12)
            checkpoints = CHECKPOINTS if full else ()
            longest = default_iterations if full and size == 512 else n
            theirs = pastiche(content, style, size, n, judge, checkpoints)
            target = theirs["losses"].get(300)
            kept = (*checkpoints, longest) if full else ()
            fp32 = ours(content, style, size, "fp32", longest, judge, kept)
            # At 512 px the auto run is our default configuration, run to its default length.
            auto = ours(content, style, size, "auto", longest, judge, kept, target=target)
            entry = {"pair": pair, "size": size, "pastiche": theirs, "fp32": fp32, "auto": auto}
            results.append(entry)
            print(json.dumps(entry), flush=True)
            for name, r in (
                ("pastiche", theirs),
                ("normstyle fp32", fp32),
                (f"normstyle auto ({auto['runtime']})", auto),
            ):
                losses = r.get("losses", {})
                reached = r.get("reached_pastiche")
                rows.append(
                    [
                        pair,
                        size,
                        name,
                        f"{r['s_per_iter']:.3f}",
                        f"{theirs['s_per_iter'] / r['s_per_iter']:.2f}×",
                        *(f"{losses[k]:.4g}" if k in losses else "—" for k in (100, 300, 500)),
                        f"{reached['seconds']:.0f} s ({reached['iteration']} it)"
                        if reached
                        else "—",
                    ]
                )
    memory = {size: peak_rss(size) for size in ((512,) if quick else (1024, 2048))}
    print(
        table(
            [
                "pair",
                "px",
                "variant",
                "s/iter",
                "vs pastiche",
                "loss@100 (fp32)",
                "loss@300",
                "loss@500",
                "reaches pastiche@300",
            ],
            rows,
        )
    )
    default = next((r["auto"] for r in results if r["size"] == 512 and r["auto"]["losses"]), None)
    if default:
        reference = next(r["fp32"] for r in results if r["size"] == 512 and r["fp32"]["losses"])
        print(
            f"default 512 px run: {default['seconds']:.0f} s, fp32 loss {default['final_loss']:.4g}"
            f" vs the fp32 path's {reference['final_loss']:.4g} at {reference['iterations']} it"
        )
    print("peak RSS: " + ", ".join(f"{s} px {gb:.2f} GB" for s, gb in memory.items()))
    path = write_results(
        "stylize-quick" if quick else "stylize", {"results": results, "peak_rss_gb": memory}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
