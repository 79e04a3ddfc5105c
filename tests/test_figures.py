"""Every figure says what it shows: inspected through matplotlib's objects (titles, axis
labels, limits, colour bars, colour maps), not only through the PNG existing."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from _helpers import TINY_CONFIG
from preattn.maps import attention_maps
from preattn.models import SimpleCNN
from preattn.train import TrainConfig, train
from preattn.train import loop as training_loop
from preattn.train.plots import confusion_figure, history_figure, lambda_figure
from preattn.viz import Batch, attention_figure, channel_gates_figure

HISTORY = [
    {
        "epoch": 1,
        "train_loss": 0.9,
        "test_loss": 0.8,
        "train_acc": 0.7,
        "test_acc": 0.75,
        "lr": 0.05,
        "lambda": {"block1": 0.1000006},
        "lambda_start": {"block1": 0.1},
        "modulation": {"block1": 0.012},
    }
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _colour_bars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_curves_of_a_one_epoch_run_show_whole_points_and_say_what_run():
    fig = history_figure(HISTORY, name="runs/fm")
    assert fig._suptitle.get_text() == "runs/fm: epoch 1, test accuracy 75.00 %"
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
        low, high = ax.get_xlim()
        assert low < 0 and high > 1  # the points at epochs 0 and 1 are not cut by the frame
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert all(float(t).is_integer() for t in ticks)
    accuracy = fig.axes[1]
    assert accuracy.get_ylim() == (0, 1)


def test_lambda_figure_has_no_offset_notation_and_a_title():
    fig = lambda_figure(HISTORY, name="runs/fm")
    fig.canvas.draw()
    lam, modulation = fig.axes
    assert lam.yaxis.get_major_formatter().get_offset() == ""
    assert lam.get_ylim()[1] - lam.get_ylim()[0] >= 0.1  # a change of 6e-7 is drawn flat
    assert modulation.get_ylim()[0] == 0
    assert fig._suptitle.get_text().startswith("runs/fm: epoch 1")


def test_confusion_figure_shows_counts_with_a_labelled_colour_bar():
    matrix = np.array([[8, 2], [1, 9]])
    fig = confusion_figure(matrix, ["cat", "dog"], "runs/x: epoch 3, test accuracy 85.00 %")
    (ax,) = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    (bar,) = _colour_bars(fig)
    assert bar.get_ylabel() == "share of the true class's images"
    assert ax.images[0].get_cmap().name == "viridis"
    assert ax.images[0].get_array()[0, 1] == pytest.approx(0.2)  # colour: row share
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "8", "9"]  # cells: counts
    assert ax.get_title().startswith("runs/x: epoch 3, test accuracy 85.00 %")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")


def _batch(n: int = 3) -> Batch:
    torch.manual_seed(0)
    images = torch.randn(n, 1, 12, 12)
    return Batch(images, [0, 1, 0][:n], ["a", "b"], "fashion-mnist")


def test_attention_figure_has_a_colour_bar_and_no_grad_cam_claim_without_it():
    model = SimpleCNN(in_chans=1, num_classes=2, attention="cbam", lam=None)
    fig, with_cam = attention_figure(model, _batch(), with_gradcam=False, name="runs/a")
    assert not with_cam
    assert fig._suptitle.get_text() == "runs/a: spatial attention gates"
    (bar,) = _colour_bars(fig)
    assert bar.get_ylabel() == "gate value"
    overlays = [im for ax in fig.axes for im in ax.images if im.get_alpha() is not None]
    assert overlays and {im.get_cmap().name for im in overlays} == {"viridis"}


def test_attention_figure_with_grad_cam_says_so():
    import pytorch_grad_cam  # noqa: F401  (a dev extra: a missing one fails here, not skips)

    model = SimpleCNN(in_chans=1, num_classes=2)
    fig, with_cam = attention_figure(model, _batch(), name="runs/a")
    assert with_cam and fig._suptitle.get_text().endswith("and Grad-CAM")
    assert _colour_bars(fig)[0].get_ylabel() == "gate value / Grad-CAM relevance"


def test_channel_gates_figure_labels_every_panel_and_has_one_legend_of_classes():
    model = SimpleCNN(in_chans=1, num_classes=2, attention="se")
    batch = _batch()
    fig = channel_gates_figure(attention_maps(model, batch.images), batch, name="runs/s")
    assert fig._suptitle.get_text() == "runs/s: channel attention gates"
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert ax.get_legend() is None
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "class"
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]


def test_training_redraws_the_confusion_of_its_last_epoch_and_logs_progress(
    tmp_path, monkeypatch, capsys
):
    drawn: list[str] = []
    real = training_loop.plot_confusion

    def spy(matrix, classes, path, title):
        drawn.append(title)
        return real(matrix, classes, path, title)

    monkeypatch.setattr(training_loop, "plot_confusion", spy)
    monkeypatch.setattr(training_loop, "LOG_EVERY_S", 0.0)  # a progress line per batch
    out = tmp_path / "run"
    config = TrainConfig(**{**TINY_CONFIG, "plots": True}, epochs=1, out=str(out))
    train(config)
    train(config.replace(epochs=2), resume=True)
    assert [t.split(": ", 1)[1].split(",")[0] for t in drawn] == ["epoch 1", "epoch 2"]
    assert (out / "confusion.png").is_file()
    text = capsys.readouterr().out  # pytest's output is no terminal: lines, not a bar
    assert "  epoch 2/2: batch 1/2 (50 %)" in text
    assert "  evaluating 12 images: batch 1/1 (100 %)" in text


def test_a_run_evaluating_more_images_than_it_trains_on_says_how_to_evaluate_fewer(
    tmp_path, capsys
):
    config = TrainConfig(
        **{**TINY_CONFIG, "limit_train": 8, "batch_size": 4}, epochs=1, out=str(tmp_path / "r")
    )
    train(config)
    assert "8 train / 12 test images (--limit-test evaluates fewer)" in capsys.readouterr().out


def test_a_grid_evaluated_at_its_last_epoch_shows_intervals_as_error_bars(tmp_path, monkeypatch):
    """ablate's accuracy.png: where only the last epoch was evaluated, each variant's mean
    and clipped 95 % interval as an error bar, side by side; curves skip unevaluated epochs."""
    from matplotlib.collections import PolyCollection
    from matplotlib.container import ErrorbarContainer

    from preattn.ablate import Grid, plots
    from preattn.ablate.stats import summarise

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.setdefault(path.name, fig))

    def rows(final: float) -> list[dict]:
        common = {"lambda": {}, "elapsed_s": 1.0}
        return [{"epoch": 1, **common}, {"epoch": 2, "test_acc": final, **common}]

    finals = {"none": [0.80, 0.82, 0.81], "pre": [0.99, 0.70, 0.85]}
    runs = {v: {s: rows(a) for s, a in enumerate(accs)} for v, accs in finals.items()}
    grid = Grid.from_dict({"base": TINY_CONFIG, "variants": {"none": {}, "pre": {}}})
    plots.plot_grid(grid, tmp_path, runs)
    ax = figures["accuracy.png"].axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]  # no bands
    for container, accs in zip(bars, finals.values(), strict=True):
        low, high = summarise(accs, (0.0, 1.0))["ci95"]
        (segments,) = container.lines[2]
        (x0, y0), (x1, y1) = segments.get_segments()[0]
        assert (y0, y1) == pytest.approx((100 * low, 100 * high))
        assert 1.9 < x0 < 2.1 and x0 == x1
    assert high == 1.0  # pre's interval reaches past 100 %: clipped
    assert bars[0].lines[0].get_xdata()[0] != bars[1].lines[0].get_xdata()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]
