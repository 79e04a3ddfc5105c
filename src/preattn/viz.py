"""Figures of what attention does in a trained run (``preattn viz``).

- ``attention.png``: one row per image: the input, each block's spatial gate ``M_s``
  (the (N, 1, H, W) factor in [0, 1] that spatial attention gives each position) upsampled
  and laid over it, and a Grad-CAM map of the last stage for the predicted class (optional
  ``grad-cam`` package), titled with the true and predicted class and its probability.
  A trained gate varies little around its level, so the overlay shows its *contrast*, the
  deviation from the image's mean gate in percent of that mean,
  ``100 · (M_s − mean_HW(M_s)) / mean_HW(M_s)``, in a diverging map (red: the position
  passes more than the image's average, blue: less) whose range is symmetric and set per
  block (the largest deviation over the images), with a colour bar per block; Grad-CAM in
  viridis on [0, 1] with its own colour bar;
- ``channel_gates.png``: per block, the distribution of the channel gate ``M_c`` (the
  (N, C) factor in [0, 1] that channel attention gives each channel) over the images, and
  the mean gate per channel for each class (SENet's excitation plots), one legend of the
  classes for the figure, each with how many images its mean is over;
- ``lambda.png``: λ per block over training, from the run's metrics;
- ``compare.png`` (with a second run): the same images side by side, one column per run.

Grad-CAM (Selvaraju et al. 2017) comes from ``pytorch-grad-cam``; without it the figures
are drawn without that column and :func:`gradcam` says how to install it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator
from torch import nn

from ._figure import new_figure
from .data.registry import DATASET_SPECS
from .maps import AttentionMaps, attention_maps

__all__ = [
    "GRADCAM_HINT",
    "OVERLAY_CMAP",
    "Batch",
    "attention_figure",
    "channel_gates_figure",
    "draw_attention",
    "draw_channel_gates",
    "gradcam",
    "run_batch",
]

GRADCAM_HINT = "Grad-CAM skipped: install it with pip install 'preattn[viz]' (grad-cam)"
OVERLAY_CMAP = "viridis"
CONTRAST_CMAP = "RdBu_r"  # diverging: white at the image's mean gate
_OVERLAY_ALPHA = 0.5


@dataclass
class Batch:
    """Images to look at: model inputs (N, C, H, W), labels and class names."""

    images: torch.Tensor
    labels: list[int]
    classes: Sequence[str]
    dataset: str

    def display(self) -> np.ndarray:
        """The images back in [0, 1] for drawing, (N, H, W, C)."""
        spec = DATASET_SPECS.get(self.dataset)
        x = self.images.float().cpu()
        if spec is not None and spec.mean is not None and spec.std is not None:
            mean = torch.tensor(spec.mean)[None, :, None, None]
            std = torch.tensor(spec.std)[None, :, None, None]
            x = x * std + mean
        else:
            x = (x + 1) / 2
        return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def run_batch(run_dir: str | Path, split: str = "test", count: int = 8) -> tuple[Any, Batch]:
    """A run's :class:`~preattn.train.LoadedModel` and the first ``count`` images of its
    ``split`` ("test" or "train") as the run's data pipeline gives them: images (N, C, H, W)
    normalised as the model takes them; the training split's augmentation drawn from seed 0,
    so every call gives the same images (the caller's random state is left as it was)."""
    from .train.build import build_data
    from .train.load import load_model

    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    with torch.random.fork_rng(devices=[]):  # building the network draws its initial weights
        loaded = load_model(run_dir)
        splits = build_data(loaded.config, limit_train=count, limit_test=count)
        data = splits.test if split == "test" else splits.train
        torch.manual_seed(0)  # the training split's augmentation, drawn the same way each time
        items = [data[i] for i in range(min(count, len(data)))]
    images = torch.stack([image for image, _ in items])
    labels = [int(y) for _, y in items]
    return loaded, Batch(images, labels, loaded.classes, loaded.config.dataset)


def last_stage(model: nn.Module) -> nn.Module:
    """The module whose activations Grad-CAM explains: ResNets' ``layer4``, SimpleCNN's
    ``conv2``, else the last module holding a convolution."""
    for name in ("layer4", "conv2"):
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            return module
    last = None
    for module in model.children():
        if any(isinstance(m, nn.Conv2d) for m in module.modules()):
            last = module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no convolution for Grad-CAM to explain")
    return last


def gradcam(model: nn.Module, images: torch.Tensor, targets: Sequence[int]) -> np.ndarray | None:
    """Grad-CAM maps (N, H, W) in [0, 1] of the last stage for ``targets``, or ``None`` when
    ``pytorch-grad-cam`` is not installed."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    was_training = model.training
    model.eval()
    try:
        with GradCAM(model=model, target_layers=[last_stage(model)]) as cam:
            maps = cam(
                input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets]
            )
    finally:
        model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


@torch.no_grad()
def _probabilities(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return model(images).float().softmax(dim=1).cpu()
    finally:
        model.train(was_training)


def _show(
    ax,
    image: np.ndarray,
    overlay: np.ndarray | None = None,
    title: str = "",
    *,
    cmap: str = OVERLAY_CMAP,
    limits: tuple[float, float] = (0.0, 1.0),
) -> None:
    gray = image.shape[-1] == 1
    ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=1)
    if overlay is not None:
        size = image.shape[:2]
        up = torch.nn.functional.interpolate(
            torch.as_tensor(overlay)[None, None].float(), size=size, mode="bilinear"
        )[0, 0].numpy()
        ax.imshow(up, cmap=cmap, alpha=_OVERLAY_ALPHA, vmin=limits[0], vmax=limits[1])
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def _overlay_colour_bar(
    fig: Any,
    axes: Any,
    label: str,
    *,
    cmap: str = OVERLAY_CMAP,
    limits: tuple[float, float] = (0.0, 1.0),
    location: str = "right",
) -> None:
    """A colour bar for the overlays of ``axes``: the value a colour stands for."""
    mappable = ScalarMappable(norm=Normalize(*limits), cmap=cmap)
    shrink = 0.6 if location == "right" else 0.9
    bar = fig.colorbar(mappable, ax=axes, shrink=shrink, fraction=0.05, pad=0.02, location=location)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)


def _suptitle(fig: Any, text: str) -> None:
    """The figure's title, each line wrapped to the figure's width (about 13 characters of
    9-point text per inch), so a long run name or explanation is never cut at the edge."""
    width = max(20, int(13 * fig.get_figwidth()))
    lines = [textwrap.fill(line, width) for line in text.split("\n")]
    fig.suptitle("\n".join(lines), fontsize=9)


def gate_contrast(gate: torch.Tensor) -> np.ndarray:
    """A spatial gate's deviation from its image's mean, in percent of that mean.

    ``gate`` (N, 1, H, W) -> (N, H, W): ``100 · (g − mean_HW(g)) / mean_HW(g)``. A gate
    that is uniform over the image (whatever its level) gives 0 everywhere: it changes
    nothing that the next BatchNorm does not undo (:mod:`preattn.modulation`)."""
    g = gate.detach().double()[:, 0]
    mean = g.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return (100 * (g - mean) / mean).float().numpy()


def draw_attention(
    model: nn.Module, batch: Batch, path: Path, *, with_gradcam: bool = True, name: str = ""
) -> tuple[Path, bool]:
    """Write ``attention.png`` (:func:`attention_figure`); returns the path and whether a
    Grad-CAM column was drawn."""
    fig, with_cam = attention_figure(model, batch, with_gradcam=with_gradcam, name=name)
    fig.savefig(path, dpi=110)
    return path, with_cam


def attention_figure(
    model: nn.Module, batch: Batch, *, with_gradcam: bool = True, name: str = ""
) -> tuple[Any, bool]:
    """The ``attention.png`` figure of run ``name`` and whether it has a Grad-CAM column."""
    maps = attention_maps(model, batch.images)
    spatial = {k: v for k, v in maps.items() if v.spatial is not None}
    probs = _probabilities(model, batch.images)
    predicted = probs.argmax(1).tolist()
    cams = gradcam(model, batch.images, predicted) if with_gradcam else None
    shown = batch.display()
    columns = 1 + len(spatial) + (cams is not None)
    rows = len(shown)
    fig = new_figure(figsize=(1.7 * columns + 1.3, 1.8 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    contrast = {block: gate_contrast(m.spatial) for block, m in spatial.items()}  # type: ignore[arg-type]
    reach = {block: max(float(np.abs(c).max()), 1e-6) for block, c in contrast.items()}
    for i in range(rows):
        truth = batch.classes[batch.labels[i]]
        guess = batch.classes[predicted[i]]
        p = float(probs[i, predicted[i]])
        _show(axes[i, 0], shown[i], title=f"true {truth}\npred {guess} ({100 * p:.0f}%)")
        for j, (block, m) in enumerate(spatial.items(), start=1):
            label = f"{block}: spatial gate M_s\n{m.placement}, λ={m.lam:.2f}" if i == 0 else ""
            limits = (-reach[block], reach[block])
            _show(
                axes[i, j], shown[i], contrast[block][i], label, cmap=CONTRAST_CMAP, limits=limits
            )
        if cams is not None:
            _show(axes[i, -1], shown[i], cams[i], "Grad-CAM (pred)" if i == 0 else "")
    for j, block in enumerate(spatial, start=1):
        _overlay_colour_bar(
            fig,
            axes[:, j],
            "M_s vs the image's mean (%)",
            cmap=CONTRAST_CMAP,
            limits=(-reach[block], reach[block]),
            location="bottom",
        )
    if cams is not None:
        _overlay_colour_bar(fig, axes[:, -1], "Grad-CAM relevance", location="bottom")
    if not spatial:
        axes[0, 0].text(
            0.0, -0.25, "no block has a spatial gate", transform=axes[0, 0].transAxes, fontsize=7
        )
    what = (
        "spatial attention gates M_s (the factor each position is given): red passes more, "
        "blue less than the image's average"
    ) + (";\nGrad-CAM: what the prediction rests on" if cams is not None else "")
    _suptitle(fig, f"{name}: {what}" if name else what)
    return fig, cams is not None


def draw_channel_gates(
    maps: dict[str, AttentionMaps], batch: Batch, path: Path, name: str = ""
) -> Path | None:
    """Write ``channel_gates.png`` (:func:`channel_gates_figure`; None when no block has a
    channel gate)."""
    fig = channel_gates_figure(maps, batch, name)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    return path


def channel_gates_figure(
    maps: dict[str, AttentionMaps], batch: Batch, name: str = ""
) -> Any | None:
    """Per block: the histogram of channel-gate values, the mean gate per channel by class."""
    channel = {k: v for k, v in maps.items() if v.channel is not None}
    if not channel:
        return None
    labels = np.asarray(batch.labels)
    fig = new_figure(figsize=(3.2 * len(channel) + 1.6, 5.8), layout="constrained")
    axes = fig.subplots(2, len(channel), squeeze=False)
    for j, (block, m) in enumerate(channel.items()):
        assert m.channel is not None
        gates = m.channel.numpy()  # (N, C)
        axes[0, j].hist(gates.ravel(), bins=40, range=(0, 1), color="tab:blue")
        axes[0, j].set(
            title=f"{block}: M_c over {len(gates)} images",
            xlabel="channel gate value",
            ylabel="count (images × channels)",
        )
        for c in np.unique(labels):
            count = int((labels == c).sum())
            label = f"{batch.classes[int(c)]} ({count} image{'s' * (count != 1)})"
            axes[1, j].plot(gates[labels == c].mean(0), lw=0.8, label=label)
        axes[1, j].set(
            title=f"{block}: mean M_c by class\n(legend: images per class)",
            xlabel="channel index",
            ylim=(0, 1),
            ylabel="mean M_c",
        )
        axes[1, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, names = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, names, title="class (images)", fontsize=6, loc="outside right center")
    what = "channel attention gates M_c (the factor each channel is given, in [0, 1])"
    _suptitle(fig, f"{name}: {what}" if name else what)
    return fig


def draw_comparison(models: dict[str, nn.Module], batch: Batch, path: Path) -> tuple[Path, bool]:
    """``compare.png``: the input, then each run's Grad-CAM (or, without grad-cam, its last
    block's spatial gate) for its own prediction."""
    shown = batch.display()
    columns: list[tuple[str, list[np.ndarray | None], list[str]]] = []
    used_cam = True
    for name, model in models.items():
        probs = _probabilities(model, batch.images)
        predicted = probs.argmax(1).tolist()
        cams = gradcam(model, batch.images, predicted)
        titles = [
            f"{name}\n{batch.classes[p]} ({100 * float(probs[i, p]):.0f}%)"
            for i, p in enumerate(predicted)
        ]
        if cams is None:
            used_cam = False
            spatial = [
                m for m in attention_maps(model, batch.images).values() if m.spatial is not None
            ]
            overlay = [
                spatial[-1].spatial[i, 0].numpy() if spatial else None for i in range(len(shown))
            ]  # type: ignore[union-attr]
        else:
            overlay = list(cams)
        columns.append((name, overlay, titles))
    fig = new_figure(
        figsize=(2.0 * (1 + len(columns)) + 1.2, 1.9 * len(shown) + 0.4), layout="constrained"
    )
    axes = fig.subplots(len(shown), 1 + len(columns), squeeze=False)
    for i in range(len(shown)):
        _show(axes[i, 0], shown[i], title=f"true {batch.classes[batch.labels[i]]}")
        for j, (_, overlay, titles) in enumerate(columns, start=1):
            _show(axes[i, j], shown[i], overlay[i], titles[i])
    kind = "Grad-CAM for each run's prediction" if used_cam else "last spatial gate per run"
    fig.suptitle(kind, fontsize=9)
    _overlay_colour_bar(fig, axes, "Grad-CAM relevance" if used_cam else "gate value")
    fig.savefig(path, dpi=110)
    return path, used_cam
