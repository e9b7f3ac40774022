"""Pictures of what ISS learning did, in the paper's style.

* ``zero_pattern``: each layer's weights as one TensorFlow-style matrix ``[inputs, gates·H]``
  (the paper's Fig. 3/4 layout): nonzero weights blue, zeros white, so removed ISS
  components show as white strips — vertical ones through every gate block, horizontal
  ones through the recurrent inputs.
* ``group_norm_histogram``: the lengths of the ISS weight groups (Fig. 6): a peak at zero
  is what group Lasso is for.
* ``units_chart``: hidden units left per layer-direction.
* ``tradeoff_plot`` (``isscli sweep``): the metric against parameters and against the measured
  speed-up, the Pareto-optimal points highlighted and joined, the dense model marked (the
  trade-off of the paper's Tables 1–4).

matplotlib is imported lazily: only ``isscli show`` and ``isscli sweep`` need it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from isscli.io.atomic import atomic_write
from isscli.io.errors import IsscliError
from isscli.iss.spec.schema import GroupSpec, IssSet
from isscli.iss.surgery import alive_components, group_norms, removable_components

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_PANEL_PIXELS = 480
NONZERO_RGB = (0.12, 0.35, 0.75)
POINT_RGB = (0.6, 0.6, 0.6)  # sweep points that are not Pareto-optimal
PARETO_RGB = (0.85, 0.33, 0.1)  # Pareto-optimal sweep points and the line joining them
BASELINE_RGB = (0.1, 0.6, 0.2)  # the dense model
TRADEOFF_SIZE = (11.0, 4.5)  # inches at 100 dpi: 1100 × 450 pixels


@dataclass(frozen=True)
class TradeoffPoint:
    """A model in :func:`tradeoff_plot`: its label, size, measured speed-up (None: not timed) and metric."""

    label: str
    parameters: int | None
    speedup: float | None
    metric: float

    def at(self, axis: str) -> float | None:
        """Where it lies along ``axis``: ``parameters`` or ``speedup``."""
        return self.parameters if axis == "parameters" else self.speedup


def _pyplot() -> ModuleType:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise IsscliError("pictures need matplotlib", "install it with: pip install 'isscli[plots]'") from None
    return plt


def layer_matrix(tensors: dict[str, torch.Tensor], iss: IssSet) -> torch.Tensor:
    """The set's producer matrices side by side, transposed to TF layout ``[inputs, gates·H]``."""
    producers = [
        tensors[p.tensor]
        for p in iss.slices
        if p.role == "producer" and p.penalize and p.dim == 0 and tensors[p.tensor].dim() == 2
    ]
    if not producers:
        raise IsscliError(f"set {iss.name!r} has no producer matrix to draw", "use a spec with producer slices")
    rows = producers[0].shape[0]
    return torch.cat([m for m in producers if m.shape[0] == rows], dim=1).t()


def nonzero_map(matrix: torch.Tensor, max_pixels: int = MAX_PANEL_PIXELS) -> torch.Tensor:
    """Boolean ``[h, w]`` map; a pixel is nonzero when any weight it covers is (so white is exact)."""
    nonzero = (matrix != 0).float()
    factor = max(1, math.ceil(max(nonzero.shape) / max_pixels))
    if factor > 1:
        nonzero = torch.nn.functional.max_pool2d(nonzero[None, None], factor, ceil_mode=True)[0, 0]
    return nonzero > 0


def _save(figure: Figure, output: Path) -> None:
    atomic_write(output, lambda temp: figure.savefig(temp, format="png", dpi=100))


def zero_pattern(tensors: dict[str, torch.Tensor], spec: GroupSpec, output: Path) -> None:
    plt = _pyplot()
    panels = [(iss.name, nonzero_map(layer_matrix(tensors, iss))) for iss in spec.sets]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for axis, (name, mask) in zip(axes[0], panels):
        image = torch.ones(*mask.shape, 3)
        image[mask] = torch.tensor(NONZERO_RGB)
        axis.imshow(image.numpy(), interpolation="nearest", aspect="auto")
        axis.set_title(f"{name}: zero weights in white")
        axis.set_xlabel("gate units (blocks of H)")
        axis.set_ylabel("inputs, then recurrent h")
    figure.tight_layout()
    _save(figure, output)
    plt.close(figure)


def group_norm_histogram(tensors: dict[str, torch.Tensor], spec: GroupSpec, output: Path, bins: int = 50) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for iss in spec.sets:
        norms = group_norms(tensors, iss)
        axis.hist(norms[torch.isfinite(norms)].numpy(), bins=bins, alpha=0.6, label=iss.name)  # NaN/inf: no bar
    axis.set_xlabel("length ‖w_k‖₂ of the ISS weight group")
    axis.set_ylabel("components")
    axis.set_title("ISS group lengths")
    axis.legend()
    figure.tight_layout()
    _save(figure, output)
    plt.close(figure)


def units_chart(tensors: dict[str, torch.Tensor], spec: GroupSpec, output: Path) -> None:
    plt = _pyplot()
    names = [iss.name for iss in spec.sets]
    total = [iss.components for iss in spec.sets]
    alive = [int(alive_components(tensors, iss).sum()) for iss in spec.sets]
    figure, axis = plt.subplots(figsize=(1.2 + 1.1 * len(names), 4.2))
    axis.bar(names, total, color="0.85", label="units")
    axis.bar(names, alive, color=NONZERO_RGB, label="nonzero ISS components")
    for index, (kept, size) in enumerate(zip(alive, total)):
        axis.text(index, kept, f"{kept}/{size}", ha="center", va="bottom")
    axis.set_ylabel("hidden units")
    axis.set_ylim(0, max(total) * 1.3)
    axis.legend(loc="upper right")
    figure.tight_layout()
    _save(figure, output)
    plt.close(figure)


def set_summary(tensors: dict[str, torch.Tensor], iss: IssSet) -> dict[str, float | int | str]:
    """Numbers behind the pictures, for the terminal and for JSON."""
    norms = group_norms(tensors, iss)
    matrix = layer_matrix(tensors, iss)
    return {
        "name": iss.name,
        "components": iss.components,
        "nonzero": int(alive_components(tensors, iss).sum()),
        "removable": int(removable_components(tensors, iss).sum()),
        "norm_min": float(norms.min()),
        "norm_median": float(norms.median()),
        "norm_max": float(norms.max()),
        "zero_weights": float((matrix == 0).float().mean()),
        "histogram": sparkline(norms),
    }


def sparkline(values: torch.Tensor, bins: int = 16) -> str:
    """A one-line histogram for terminals (of the finite values: NaN or inf norms, from such weights, are left out)."""
    values = values.float()[torch.isfinite(values)]
    if not values.numel():
        return "(no finite values)"
    counts = torch.histc(values, bins=bins, min=0.0, max=float(values.max()) or 1.0)
    bars = " ▁▂▃▄▅▆▇█"
    peak = float(counts.max()) or 1.0
    return "".join(bars[math.ceil(float(c) / peak * (len(bars) - 1))] for c in counts)


def tradeoff_plot(
    points: list[TradeoffPoint],
    baseline: TradeoffPoint | None,
    metric: str,
    fronts: dict[str, list[int]],
    output: Path,
) -> None:
    """Two panels: ``metric`` against ``parameters`` and against ``speedup``.

    ``fronts[axis]`` lists the indices (into ``points`` plus, last, the baseline when given)
    of the Pareto-optimal ones, in drawing order.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=TRADEOFF_SIZE)
    everything = points + ([baseline] if baseline is not None else [])
    titles = {"parameters": "parameters (after compaction)", "speedup": "measured speed-up over the dense model (×)"}
    for axis, key in zip(axes, ("parameters", "speedup")):
        front = [i for i in fronts.get(key, []) if everything[i].at(key) is not None]
        others = [i for i, p in enumerate(points) if i not in front and p.at(key) is not None]
        axis.scatter([points[i].at(key) for i in others], [points[i].metric for i in others], s=40,
                     color=POINT_RGB, label="sweep point", zorder=2)
        axis.plot([everything[i].at(key) for i in front], [everything[i].metric for i in front], "-o",
                  color=PARETO_RGB, markersize=9, linewidth=2, label="Pareto front", zorder=3)
        if baseline is not None and baseline.at(key) is not None:
            axis.scatter([baseline.at(key)], [baseline.metric], marker="*", s=320, color=BASELINE_RGB,
                         edgecolor="black", linewidth=0.5, label="dense model", zorder=4)
        for entry in everything:
            if entry.at(key) is not None:
                axis.annotate(entry.label, (entry.at(key), entry.metric), textcoords="offset points",
                              xytext=(5, 5), fontsize=7)
        values = [value for value in (entry.at(key) for entry in everything) if value is not None]
        if key == "parameters" and values and min(values) > 0 and max(values) / min(values) > 20:
            axis.set_xscale("log")
        axis.set_xlabel(titles[key])
        axis.set_ylabel(metric)
        axis.set_title(f"{metric} vs {'parameters' if key == 'parameters' else 'measured speed-up'}")
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    _save(figure, output)
    plt.close(figure)
