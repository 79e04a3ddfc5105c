"""Every figure says what it shows: inspected through matplotlib's objects (titles, axis
labels, limits, colour bars, colour maps), not only through the PNG existing."""

from __future__ import annotations

import logging

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


def _overlays(fig) -> list:
    return [
        im
        for ax in fig.axes
        if ax.get_label() != "<colorbar>"
        for im in ax.images
        if im.get_alpha() is not None
    ]


def test_attention_figure_shows_each_gates_contrast_with_its_own_colour_bar():
    """The overlay is the gate's deviation from its image's mean, in percent of that mean
    (computed here by hand from attention_maps), on a symmetric diverging range as wide as
    the largest deviation of that block, with a colour bar per block saying so; no Grad-CAM
    column or claim without it, and titles that say what M_s is."""
    model = SimpleCNN(in_chans=1, num_classes=2, attention="cbam", lam=None)
    batch = _batch()
    fig, with_cam = attention_figure(model, batch, with_gradcam=False, name="demo")
    assert not with_cam
    title = " ".join(fig._suptitle.get_text().split())  # wrapped to the figure's width
    assert title.startswith("demo: spatial attention gates M_s (the factor each position")
    assert "Grad-CAM" not in title
    bars = _colour_bars(fig)
    assert [b.get_xlabel() for b in bars] == ["M_s vs the image's mean (%)"] * 2
    gates = {k: m.spatial[:, 0].double() for k, m in attention_maps(model, batch.images).items()}
    overlays = _overlays(fig)
    assert len(overlays) == 2 * len(batch.labels)
    for j, block in enumerate(["block1", "block2"]):
        g = gates[block]
        mean = g.mean(dim=(1, 2), keepdim=True)
        by_hand = (100 * (g - mean) / mean).numpy()
        reach = np.abs(by_hand).max()
        assert bars[j].get_xlim() == pytest.approx((-reach, reach), rel=1e-4)
        for i in range(len(batch.labels)):
            image = overlays[2 * i + j]
            assert image.get_cmap().name == "RdBu_r"
            assert image.get_clim() == pytest.approx((-reach, reach), rel=1e-4)
    top_titles = [ax.get_title() for ax in fig.axes[1:3]]
    assert top_titles[0].startswith("block1: spatial gate M_s\npre, λ=")


def test_attention_figure_with_grad_cam_says_so():
    import pytorch_grad_cam  # noqa: F401  (a dev extra: a missing one fails here, not skips)

    model = SimpleCNN(in_chans=1, num_classes=2)
    fig, with_cam = attention_figure(model, _batch(), name="runs/a")
    assert with_cam and "Grad-CAM: what the prediction rests on" in fig._suptitle.get_text()
    bars = _colour_bars(fig)
    assert bars[-1].get_xlabel() == "Grad-CAM relevance"
    assert bars[-1].get_xlim() == (0.0, 1.0)
    assert {im.get_cmap().name for im in _overlays(fig)} == {"RdBu_r", "viridis"}


def test_channel_gates_figure_labels_every_panel_and_has_one_legend_of_classes():
    model = SimpleCNN(in_chans=1, num_classes=2, attention="se")
    batch = _batch()
    fig = channel_gates_figure(attention_maps(model, batch.images), batch, name="runs/s")
    title = fig._suptitle.get_text()
    assert " ".join(title.split()) == (
        "runs/s: channel attention gates M_c (the factor each channel is given, in [0, 1])"
    )
    assert max(len(line) for line in title.splitlines()) <= 13 * fig.get_figwidth()
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert ax.get_legend() is None
    (legend,) = fig.legends
    assert legend.get_title().get_text() == "class (images)"
    # labels [0, 1, 0]: the class means are over two images and one
    assert [t.get_text() for t in legend.get_texts()] == ["a (2 images)", "b (1 image)"]


def test_training_redraws_the_confusion_of_its_last_epoch_and_logs_progress(
    tmp_path, monkeypatch, caplog
):
    drawn: list[str] = []
    real = training_loop.plot_confusion

    def spy(matrix, classes, path, title):
        drawn.append(title)
        return real(matrix, classes, path, title)

    monkeypatch.setattr(training_loop, "plot_confusion", spy)
    monkeypatch.setattr(training_loop, "LOG_EVERY_S", 0.0)  # a progress line per batch
    caplog.set_level(logging.INFO, logger="preattn")
    out = tmp_path / "run"
    config = TrainConfig(**{**TINY_CONFIG, "plots": True}, epochs=1, out=str(out))
    train(config)
    train(config.replace(epochs=2), resume=True)
    assert [t.split(": ", 1)[1].split(",")[0] for t in drawn] == ["epoch 1", "epoch 2"]
    assert (out / "confusion.png").is_file()
    text = "\n".join(caplog.messages)  # pytest's output is no terminal: lines, not a bar
    assert "  epoch 2/2: batch 1/2 (50 %)" in text
    assert "  evaluating 12 images: batch 1/1 (100 %)" in text


def test_a_run_evaluating_more_images_than_it_trains_on_says_how_to_evaluate_fewer(
    tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="preattn")
    config = TrainConfig(
        **{**TINY_CONFIG, "limit_train": 8, "batch_size": 4}, epochs=1, out=str(tmp_path / "r")
    )
    train(config)
    assert "8 train / 12 test images (--limit-test evaluates fewer)" in caplog.text


def _grid_figures(monkeypatch, tmp_path, runs, variants=("none", "pre")):
    """ablate's figures of ``runs`` as matplotlib figures, by file name."""
    from preattn.ablate import Grid, plots

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.setdefault(path.name, fig))
    grid_file = tmp_path / "claim9-example.yaml"
    grid_file.write_text(
        "base: {}\nvariants: {" + ", ".join(f"{v}: {{}}" for v in variants) + "}\n"
    )
    plots.plot_grid(Grid.from_yaml(grid_file), tmp_path / "report", runs)
    return figures


def _rows(accuracies, modulation=None, seconds=1.0):
    """Metrics rows of one run: test accuracy where given (None: not evaluated)."""
    return [
        {
            "epoch": e + 1,
            "lambda": {},
            "elapsed_s": seconds * (e + 1),
            **({"test_acc": a} if a is not None else {}),
            **({"modulation": modulation} if modulation else {}),
        }
        for e, a in enumerate(accuracies)
    ]


def test_a_grid_evaluated_at_its_last_epoch_shows_each_seed_joined_across_variants(
    tmp_path, monkeypatch
):
    """ablate's accuracy.png where only the last epoch was evaluated: x is the variant, a
    grey line per seed through its runs (a missing run breaks it), and each variant's mean
    with its clipped 95 % interval as an error bar; the title names the grid and epoch."""
    from matplotlib.container import ErrorbarContainer

    from preattn.ablate.stats import summarise

    finals = {"none": [0.80, 0.82, 0.81], "pre": [0.99, 0.70, 0.85]}
    runs = {v: {s: _rows([None, a]) for s, a in enumerate(accs)} for v, accs in finals.items()}
    del runs["pre"][2]  # seed 2 of pre did not finish
    ax = _grid_figures(monkeypatch, tmp_path, runs)["accuracy.png"].axes[0]
    assert (
        ax.get_title()
        == "claim9-example\ntest accuracy after epoch 2; a line joins one seed's runs"
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == ["none (n=3)", "pre (n=2)"]
    assert ax.get_ylabel() == "test accuracy (%)"
    seeds = [line for line in ax.lines if line.get_color() == "grey" and len(line.get_xdata())]
    assert [list(line.get_ydata()) for line in seeds][:2] == [
        pytest.approx([80.0, 99.0]),
        pytest.approx([82.0, 70.0]),
    ]
    assert list(seeds[2].get_xdata()) == [0, 1] and np.isnan(seeds[2].get_ydata()[1])
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    for index, (container, accs) in enumerate(
        zip(bars, [finals["none"], [0.99, 0.70]], strict=True)
    ):
        low, high = summarise(accs, (0.0, 1.0))["ci95"]
        (segments,) = container.lines[2]
        (x0, y0), (x1, y1) = segments.get_segments()[0]
        assert (y0, y1) == pytest.approx((100 * low, 100 * high))
        assert x0 == x1 == pytest.approx(index + 0.15)
    assert high == 1.0  # pre's interval reaches past 100 %: clipped


def test_each_corrupted_test_set_gets_its_own_per_seed_figure(tmp_path, monkeypatch):
    """A grid trained and tested on a corruption (claim 1) decides on that accuracy:
    ``accuracy-noise-0.2.png`` shows each seed's accuracy under ``noise:0.2`` after the last
    epoch, with the mean and clipped interval of those values, not of the clean ones."""
    from matplotlib.container import ErrorbarContainer

    from preattn.ablate.stats import summarise

    clean = {"none": [0.80, 0.82], "pre": [0.81, 0.83]}
    noisy = {"none": [0.60, 0.66], "pre": [0.70, 0.64]}
    runs = {}
    for variant in clean:
        runs[variant] = {}
        for seed in range(2):
            rows = _rows([None, clean[variant][seed]])
            rows[-1]["test_acc_corrupt"] = {"noise:0.2": noisy[variant][seed]}
            runs[variant][seed] = rows
    figures = _grid_figures(monkeypatch, tmp_path, runs)
    assert "accuracy-noise-0.2.png" in figures
    ax = figures["accuracy-noise-0.2.png"].axes[0]
    assert ax.get_title() == (
        "claim9-example\ntest accuracy under noise:0.2 after epoch 2; a line joins one seed's runs"
    )
    assert ax.get_ylabel() == "test accuracy under noise:0.2 (%)"
    seeds = [line for line in ax.lines if line.get_color() == "grey" and len(line.get_xdata())]
    assert [list(line.get_ydata()) for line in seeds] == [
        pytest.approx([60.0, 70.0]),
        pytest.approx([66.0, 64.0]),
    ]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    for container, values in zip(bars, noisy.values(), strict=True):
        low, high = summarise(values, (0.0, 1.0))["ci95"]
        (segments,) = container.lines[2]
        (_, y0), (_, y1) = segments.get_segments()[0]
        assert (y0, y1) == pytest.approx((100 * low, 100 * high))
    clean_ax = figures["accuracy.png"].axes[0]
    clean_seeds = [line for line in clean_ax.lines if line.get_color() == "grey"]
    assert list(clean_seeds[0].get_ydata()) == pytest.approx([80.0, 81.0])


def test_runs_that_hold_images_out_plot_validation_accuracy_per_epoch_and_against_time(
    tmp_path, monkeypatch
):
    """Runs with ``holdout`` score the test set after the last epoch only: their
    per-epoch curve (``accuracy-validation.png``) and accuracy against seconds are drawn
    from the validation accuracy of every epoch, and say so."""
    val = {"none": [[0.5, 0.7], [0.6, 0.8]], "pre": [[0.55, 0.75], [0.65, 0.85]]}
    runs = {}
    for variant, by_seed in val.items():
        runs[variant] = {}
        for seed, accs in enumerate(by_seed):
            rows = _rows([None, 0.9], seconds=10.0)
            for row, acc in zip(rows, accs, strict=True):
                row["val_acc"] = acc
            runs[variant][seed] = rows
    figures = _grid_figures(monkeypatch, tmp_path, runs)
    ax = figures["accuracy-validation.png"].axes[0]
    assert ax.get_ylabel() == "validation accuracy (%)"
    assert ax.get_title().startswith("claim9-example: validation accuracy")
    none_line = next(line for line in ax.lines if line.get_label().startswith("none"))
    assert list(none_line.get_ydata()) == pytest.approx([55.0, 75.0])  # mean of the seeds
    timed = figures["accuracy_vs_time.png"].axes[0]
    assert timed.get_ylabel() == "validation accuracy (%)"
    pre_line = next(line for line in timed.lines if line.get_label() == "pre")
    assert list(pre_line.get_xdata()) == pytest.approx([10.0, 20.0])
    assert list(pre_line.get_ydata()) == pytest.approx([60.0, 80.0])
    # the test set, scored once, keeps its per-seed figure
    assert figures["accuracy.png"].axes[0].get_ylabel() == "test accuracy (%)"


def test_a_grid_evaluated_every_epoch_draws_clipped_bands_over_whole_epochs(tmp_path, monkeypatch):
    from matplotlib.collections import PolyCollection

    runs = {
        "none": {s: _rows([0.5, 0.9 + 0.04 * s]) for s in range(3)},
        "pre": {s: _rows([0.6, 0.98 + 0.01 * s]) for s in range(3)},
    }
    ax = _grid_figures(monkeypatch, tmp_path, runs)["accuracy.png"].axes[0]
    assert ax.get_title().startswith("claim9-example: test accuracy")
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    assert max(v[1] for band in bands for v in band.get_paths()[0].vertices) <= 100.0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2"]


def test_modulation_figure_has_one_legend_for_its_panels_and_a_titled_log_axis(
    tmp_path, monkeypatch
):
    runs = {
        "pre": {0: _rows([0.8], {"block1": 0.01, "block2": 0.3})},
        "cbam": {0: _rows([0.8], {"block1": 0.5, "block2": 0.6})},
        "none": {0: _rows([0.8])},
    }
    fig = _grid_figures(monkeypatch, tmp_path, runs, ("pre", "cbam", "none"))["modulation.png"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["block1", "block2"]
    assert all(ax.get_legend() is None and ax.get_yscale() == "log" for ax in panels)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["pre", "cbam", "2 % (off below)"]
    assert fig._suptitle.get_text().startswith("claim9-example: how much attention")
    assert panels[0].lines[0].get_ydata()[0] == pytest.approx(1.0)  # percent


def test_ablate_lambda_figure_draws_a_change_of_millionths_flat_on_an_axis_at_least_point_one_tall(
    tmp_path, monkeypatch
):
    """As a run's own lambda.png: λ going from 0.1 to 0.099995 over two epochs is drawn on
    an axis at least 0.1 tall (not zoomed to look like a fall), shared by the panels, and
    the label gives the total change Δλ."""
    runs = {}
    for variant, end in (("pre", 0.099995), ("pre-lamlr", 0.1001)):
        rows = _rows([None, 0.8])
        rows[0]["lambda_start"] = {"block1": 0.1}
        rows[0]["lambda"] = {"block1": 0.099998}
        rows[1]["lambda"] = {"block1": end}
        runs[variant] = {0: rows}
    fig = _grid_figures(monkeypatch, tmp_path, runs, ("pre", "pre-lamlr"))["lambda.png"]
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["pre", "pre-lamlr"]
    for ax in panels:
        low, high = ax.get_ylim()
        assert high - low >= 0.1 and low < 0.099995 and high > 0.1001
        assert ax.yaxis.get_major_formatter().get_offset() == ""
    labels = [t.get_text() for t in panels[0].get_legend().get_texts()]
    assert labels == ["block1  (Δλ = -5e-06)"]


def test_modulation_figure_of_one_epoch_has_whole_epoch_ticks_and_the_point_inside_the_frame(
    tmp_path, monkeypatch
):
    runs = {"pre": {0: _rows([0.8], {"block1": 0.01, "block2": 0.3})}}
    fig = _grid_figures(monkeypatch, tmp_path, runs, ("pre",))["modulation.png"]
    fig.canvas.draw()
    for ax in [ax for ax in fig.axes if ax.get_visible()]:
        (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
        ticks = [t for t in ax.get_xticks() if x_low <= t <= x_high]
        assert ticks == [1.0]
        point = ax.lines[0].get_ydata()[0]
        assert x_low < 1 - 0.25 and x_high > 1 + 0.25
        assert y_low < point / 1.2 and y_high > point * 1.2  # log axis: a margin either side
        assert y_low < 2.0 < y_high  # the 2 % line too


def test_accuracy_against_time_shows_a_once_evaluated_variants_spread_of_seconds(
    tmp_path, monkeypatch
):
    from matplotlib.container import ErrorbarContainer

    runs = {"none": {s: _rows([None, 0.8 + 0.01 * s], seconds=10.0 * (s + 1)) for s in range(3)}}
    ax = _grid_figures(monkeypatch, tmp_path, runs, ("none",))["accuracy_vs_time.png"].axes[0]
    (bar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    seconds = sorted(x for segment in bar.lines[2][0].get_segments() for x, _ in segment)
    assert seconds[0] == pytest.approx(20.0) and seconds[-1] == pytest.approx(60.0)
    assert ax.get_title() == "claim9-example: test accuracy against wall time"
    assert ax.get_xlabel().startswith("seconds")
