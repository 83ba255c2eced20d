"""Weight initialisation (CS231n lecture 7, course notes 3b): six hidden layers of width 4096 on a
batch of 16 unit-Gaussian inputs. tanh with W = 0.01·N(0,1) (activations collapse to zero),
0.05·N(0,1) (they saturate at ±1), Xavier 1/√n ("just right"); ReLU with Xavier (collapses,
half the variance is lost per layer) and Kaiming √(2/n) (stable). Per layer: activation mean, std
and histogram, the gradient norm of each W for L = ½‖y − t‖²/B (t: a fixed random target), and
the theory Var[y_l] = n·Var[w]·Var[y_{l−1}] (×½ for ReLU) against the measured pre-activation
variances, and the one-step form n·Var[w]·E[x²] on each layer's measured input."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from normstyle.io.figures import save_figure, subplots
from normstyle.lab.common import write_numbers
from normstyle.statistics.engine import ActivationStats, HistogramSpec

# (label, activation, weight std as a function of fan-in n). The lecture's fixed scales are for
# n = 4096; at other widths (the tests' tiny runs) they keep n·Var[w], hence the same regime.
CONFIGS: list[tuple[str, str, Callable[[int], float]]] = [
    ("tanh, W = 0.01·N(0,1)", "tanh", lambda n: 0.01 * math.sqrt(4096 / n)),
    ("tanh, W = 0.05·N(0,1)", "tanh", lambda n: 0.05 * math.sqrt(4096 / n)),
    ("tanh, Xavier 1/√n", "tanh", lambda n: 1 / math.sqrt(n)),
    ("ReLU, Xavier 1/√n", "relu", lambda n: 1 / math.sqrt(n)),
    ("ReLU, Kaiming √(2/n)", "relu", lambda n: math.sqrt(2 / n)),
]


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(
    width: int,
    depth: int,
    activation: str | Callable[[], nn.Module],
    std: float,
    generator: torch.Generator,
) -> nn.Sequential:
    """``depth`` × (Linear without bias, activation), layers named fc1/act1 …; ``activation``
    is ``"tanh"``, ``"relu"`` or a factory of activation modules."""
    make = ACTIVATIONS[activation] if isinstance(activation, str) else activation
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index in range(1, depth + 1):
        # skip_init: nn.Linear's own uniform init would be overwritten at once, and drawing it took
        # ~40% of `lab init` (global generator only: the numbers do not change without it).
        linear = nn.utils.skip_init(nn.Linear, width, width, bias=False)
        with torch.no_grad():
            linear.weight.normal_(0.0, std, generator=generator)
        layers[f"fc{index}"] = linear
        layers[f"act{index}"] = make()
    return nn.Sequential(layers)


def experiment(width: int, depth: int, batch: int, seed: int) -> list[dict[str, Any]]:
    """The numbers of every configuration (no figures)."""
    results = []
    for label, activation, std_of in CONFIGS:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, width, generator=generator)
        std = std_of(width)
        net = mlp(width, depth, activation, std, generator)
        spec = (
            HistogramSpec(bins=50, low=-1.0, high=1.0)
            if activation == "tanh"
            else HistogramSpec(50, 0.0, 3.0)
        )
        with (
            ActivationStats(net, ["act*"], moments=2, histogram=spec) as post,
            ActivationStats(net, ["fc*"], moments=2) as pre,
        ):
            y = net(x)
            target = torch.randn(batch, width, generator=generator)
            loss = 0.5 * (y - target).square().sum() / batch
            loss.backward()
        gain = 0.5 if activation == "relu" else 1.0
        theory, previous = [], float(x.var(correction=0))
        for _ in range(depth):  # Var[y_l] = n·Var[w]·g·Var[y_{l-1}], g = ½ for ReLU after layer 1
            previous = width * std**2 * previous
            theory.append(previous)
            previous *= gain
        # n·Var[w]·E[x²] with E[x²] measured on the layer's actual input: exact in expectation for
        # any activation (independent zero-mean weights); the chain above assumes g·Var[y].
        second_moment = [float(x.square().mean())] + [
            post[f"act{i}"].overall_std ** 2 + post[f"act{i}"].overall_mean ** 2
            for i in range(1, depth)
        ]
        layers = []
        for index in range(1, depth + 1):
            a, p = post[f"act{index}"], pre[f"fc{index}"]
            layers.append(
                {
                    "layer": index,
                    "mean": a.overall_mean,
                    "std": a.overall_std,
                    "pre_activation_var": p.overall_std**2,
                    "theory_var": theory[index - 1],
                    "one_step_var": width * std**2 * second_moment[index - 1],
                    "grad_norm": float(getattr(net, f"fc{index}").weight.grad.norm()),
                    "zero_fraction": float(a.zero_fraction.mean()),
                    "histogram": a.hist.tolist(),
                    "edges": a.histogram_edges.tolist(),
                }
            )
        results.append(
            {"config": label, "activation": activation, "weight_std": std, "layers": layers}
        )
    return results


def saturated_fraction(width: int, depth: int, batch: int, seed: int, std: float) -> list[float]:
    """Per layer, the fraction of tanh outputs with |x| > 0.99 (gradient below 2%)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=generator)
    net = mlp(width, depth, "tanh", std, generator)
    fractions = []
    with torch.no_grad():
        for index in range(depth):
            x = net[2 * index + 1](net[2 * index](x))
            fractions.append(float((x.abs() > 0.99).double().mean()))
    return fractions


def figures(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """The histogram grid of the lecture and the per-layer summary plots."""
    depth = len(results[0]["layers"])
    fig, axes = subplots(
        len(results), depth, figsize=(2.2 * depth, 1.9 * len(results)), squeeze=False
    )
    for row, result in zip(axes, results):
        for ax, layer in zip(row, result["layers"]):
            edges = layer["edges"]
            ax.bar(
                edges[:-1],
                layer["histogram"],
                width=edges[1] - edges[0],
                align="edge",
                color="tab:blue",
            )
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            ax.set_title(
                f"layer {layer['layer']}: μ={layer['mean']:.2g}, σ={layer['std']:.2g}", fontsize=7
            )
        row[0].set_ylabel(result["config"], fontsize=7)
    fig.suptitle(
        "Activation histograms per layer (6 × 4096 units, batch 16, unit-Gaussian input)",
        fontsize=10,
    )
    fig.tight_layout()
    paths = [save_figure(fig, out / "init_histograms.png")]

    fig, axes = subplots(1, 3, figsize=(15, 4))
    for result in results:
        layers = [entry["layer"] for entry in result["layers"]]
        axes[0].semilogy(
            layers, [max(e["std"], 1e-12) for e in result["layers"]], "o-", label=result["config"]
        )
        line = axes[1].semilogy(
            layers,
            [e["pre_activation_var"] for e in result["layers"]],
            "o-",
            label=f"{result['config']}: measured",
        )
        axes[1].semilogy(
            layers, [e["theory_var"] for e in result["layers"]], "--", color=line[0].get_color()
        )
        axes[2].semilogy(
            layers,
            [max(e["grad_norm"], 1e-30) for e in result["layers"]],
            "o-",
            label=result["config"],
        )
    axes[0].set(title="std of each layer's activations", xlabel="layer", ylabel="std (log)")
    axes[1].set(
        title="pre-activation variance: measured (solid) vs n·Var[w]·Var[x] (dashed)",
        xlabel="layer",
        ylabel="variance (log)",
    )
    axes[2].set(
        title="‖∂L/∂W‖ per layer, L = ½‖y − t‖²/B", xlabel="layer", ylabel="gradient norm (log)"
    )
    axes[1].title.set_fontsize(9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(save_figure(fig, out / "init_layers.png"))
    return paths


def run(out: Path, tiny: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the experiment (``tiny``: width 1024) and write its figures and numbers."""
    width, depth, batch = (1024, 6, 16) if tiny else (4096, 6, 16)
    results = experiment(width, depth, batch, seed)
    numbers = {
        "width": width,
        "depth": depth,
        "batch": batch,
        "configs": results,
        "tanh_0.05_saturated_fraction": saturated_fraction(
            width, depth, batch, seed, CONFIGS[1][2](width)
        ),
    }
    figures(results, out)
    write_numbers(out, "init", numbers)
    return numbers
