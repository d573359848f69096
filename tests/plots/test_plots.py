"""cl plot: feature frames, the run's one projection and fixed limits, PNG/GIF/curves/compare files."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from matplotlib import _pylab_helpers
from PIL import Image
from typer.testing import CliRunner

from centerloss import plots
from centerloss.plots import snapshots
from centerloss.store.checkpoint import read_history, read_tensors, save_tensors
from cli.main import app

runner = CliRunner()


def cl(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def run_copy(runs, tmp_path):
    """A copy of the flat run, for tests that write into the run or change it."""
    return shutil.copytree(runs["flat"], tmp_path / "run")


def test_epoch_figure_titles_legend_and_png_size(runs, tmp_path):
    view = snapshots.load_run(runs["flat"])
    fig = plots.epoch_figure(view, 2)
    texts = [t.get_text() for t in fig.texts]
    acc = view.frame(2).metrics["test_accuracy"]
    assert f"MNIST  ·  λ = 0.1  ·  epoch 2/2  ·  test accuracy {100 * acc:.1f}%" in texts
    assert "2-D features as learned" in texts
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [str(i) for i in range(10)] + ["class center"]
    path = plots.save_figure(fig, tmp_path / "e.png")
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (int(plots.EPOCH_SIZE[0] * plots.DPI), int(plots.EPOCH_SIZE[1] * plots.DPI))
    assert _pylab_helpers.Gcf.get_num_fig_managers() == 0    # nothing registered with pyplot


def test_axis_limits_fixed_over_the_run_and_hold_every_center(runs):
    view = snapshots.load_run(runs["flat"])
    axes = [plots.epoch_figure(view, e).axes[0] for e in (1, 2)]
    assert axes[0].get_xlim() == axes[1].get_xlim()
    assert axes[0].get_ylim() == axes[1].get_ylim()
    (x0, x1), (y0, y1) = axes[0].get_xlim(), axes[0].get_ylim()
    for frame in view.frames.values():
        assert (frame.centers[:, 0] > x0).all() and (frame.centers[:, 0] < x1).all()
        assert (frame.centers[:, 1] > y0).all() and (frame.centers[:, 1] < y1).all()
    # equal aspect: one feature unit is as long on x as on y
    box = axes[0].get_position()
    w, h = axes[0].figure.get_size_inches()
    assert (x1 - x0) / (box.width * w) == pytest.approx((y1 - y0) / (box.height * h))


def test_limits_hold_every_frame_but_a_stray_point():
    rng = np.random.default_rng(0)
    small = snapshots.Frame(1, rng.normal(0, 1, (1000, 2)), np.zeros(1000, int), np.zeros((1, 2)), {}, 1.0)
    big = snapshots.Frame(2, rng.normal(5, 3, (1000, 2)), np.zeros(1000, int), np.full((1, 2), -9.0), {}, 1.0)
    big.points[0] = (1e6, 1e6)                  # one stray feature must not shrink the picture
    (x0, x1), (y0, y1) = snapshots.frame_limits([small, big])
    for f in (small, big):
        inside = ((f.points[:, 0] > x0) & (f.points[:, 0] < x1) & (f.points[:, 1] > y0) & (f.points[:, 1] < y1))
        assert inside.mean() >= 0.997
    assert x0 < -9 and y0 < -9 and x1 < 100 and y1 < 100


def test_a_run_view_takes_its_limits_over_all_its_epochs(run_copy):
    # Blow epoch 1's features up a hundredfold: the limits of the run, even those of a plot of
    # epoch 2, must still hold them.
    path = snapshots.snapshot_path(run_copy, 1)
    tensors, meta = read_tensors(path)
    tensors["test_features"] = tensors["test_features"] * 100
    save_tensors(path, tensors, meta)
    view = snapshots.load_run(run_copy)
    (x0, x1), (y0, y1) = view.limits
    points = view.frame(1).points
    assert x0 <= points[:, 0].min() and points[:, 0].max() <= x1
    assert y0 <= points[:, 1].min() and points[:, 1].max() <= y1
    assert plots.epoch_figure(view, 2).axes[0].get_xlim()[1] >= points[:, 0].max()


def test_two_dimensional_features_are_drawn_as_they_are(runs):
    view = snapshots.load_run(runs["flat"])
    snap = snapshots.load_snapshot(runs["flat"], 1)
    assert not view.projection.is_pca
    np.testing.assert_array_equal(view.frame(1).points, snap.features["test"].double().numpy())


def test_wide_features_go_through_one_pca_fitted_on_the_last_epoch(runs):
    view = snapshots.load_run(runs["wide"])
    assert view.projection.is_pca and view.projection.fitted_on == 2
    last = snapshots.load_snapshot(runs["wide"], 2).features["test"].double().numpy()
    first = snapshots.load_snapshot(runs["wide"], 1).features["test"].double().numpy()
    # the same plane spanned by the top two eigenvectors of the last epoch's covariance
    _, vectors = np.linalg.eigh(np.cov(last, rowvar=False))
    top = vectors[:, -2:]
    axes = view.projection.axes
    np.testing.assert_allclose(np.abs(axes.T @ top).sum(), 2.0, atol=1e-6)  # same plane
    np.testing.assert_allclose(view.frame(1).points, (first - last.mean(0)) @ axes, atol=1e-9)
    note = plots.view_note(view, view.frame(1))
    assert note.startswith("PCA of 4-D features, fitted once on epoch 2")
    assert note in [t.get_text() for t in plots.epoch_figure(view, 1).texts]


def test_pca_finds_the_plane_of_largest_variance_with_a_fixed_sign():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 5, generator=g) * torch.tensor([0.1, 5.0, 0.1, 3.0, 0.1])
    p = snapshots.Projection.fit(x, epoch=7)
    assert p.axes[1, 0] == pytest.approx(1.0, abs=0.01)       # first axis: the variance-25 feature
    assert p.axes[3, 1] == pytest.approx(1.0, abs=0.01)       # second: the variance-9 one
    assert p.kept_variance(x) == pytest.approx(34 / 34.03, abs=0.01)
    # eigenvectors have no sign of their own; each axis's largest loading is made positive so
    # that the picture does not flip at random
    for seed in range(6):
        y = torch.randn(500, 6, generator=torch.Generator().manual_seed(seed)) @ torch.randn(6, 6)
        axes = snapshots.Projection.fit(y, epoch=1).axes
        assert (axes[np.abs(axes).argmax(0), [0, 1]] > 0).all()
    with pytest.raises(snapshots.PlotError, match="1-D features"):
        snapshots.Projection.fit(x[:, :1], epoch=1)


def test_gif_has_one_frame_per_epoch_of_the_figure_size(runs, tmp_path):
    path = plots.write_gif(snapshots.load_run(runs["flat"]), tmp_path / "f.gif", fps=4)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 2 and im.info["loop"] == 0
        assert im.size == (800, 650)
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
            # the class colors survive the 256-color palette exactly (the centers are drawn opaque)
            pixels = {tuple(p) for p in np.asarray(im.convert("RGB")).reshape(-1, 3).tolist()}
            for color in plots.class_colors(10):
                assert tuple(int(round(255 * v)) for v in color[:3]) in pixels
    assert durations == [250, 2000]
    with pytest.raises(snapshots.PlotError, match=r"\.gif"):
        plots.write_gif(snapshots.load_run(runs["flat"]), tmp_path / "f.png")


def test_curves_plot_every_history_record(runs, tmp_path):
    fig = plots.curves_figure(runs["flat"])
    history = read_history(runs["flat"])
    assert len(fig.axes) == 5
    ce = fig.axes[0].get_lines()[0]
    assert list(ce.get_xdata()) == [1, 2]
    assert list(ce.get_ydata()) == [r["train_ce"] for r in history]
    acc = fig.axes[2].get_lines()[0]
    assert list(acc.get_ydata()) == pytest.approx([100 * r["test_accuracy"] for r in history])
    rate = fig.axes[4]        # the learning rate of each epoch's last step, as history.jsonl has it
    assert rate.get_title() == "learning rate at each epoch's end"
    assert list(rate.get_lines()[0].get_ydata()) == [r["lr"] for r in history]
    assert all(r["lr"] > 0 for r in history)
    with Image.open(plots.save_figure(fig, tmp_path / "c.png")) as im:
        assert im.size == (1000, 960)


def test_compare_has_one_panel_per_run_titled_with_lambda(runs, tmp_path):
    names = ["flat", "wide", "flat again"]
    views = [snapshots.load_run(runs[k], epochs=[2]) for k in ("flat", "wide", "flat")]
    fig = plots.compare_figure(views, [2, 2, 2], names)
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("λ = 0.1") and titles[1].startswith("λ = 0 ")
    assert "PCA of 4-D" in titles[1] and "PCA" not in titles[0]
    w, h = fig.get_size_inches()
    with Image.open(plots.save_figure(fig, tmp_path / "c.png")) as im:
        assert im.size == (round(w * plots.DPI), round(h * plots.DPI))


@pytest.mark.parametrize("name,magic", [("f.svg", b"<?xml"), ("f.pdf", b"%PDF"), ("f.jpg", b"\xff\xd8")])
def test_the_extension_picks_the_format(runs, tmp_path, name, magic):
    fig = plots.epoch_figure(snapshots.load_run(runs["flat"]), 1)
    assert plots.save_figure(fig, tmp_path / name).read_bytes().startswith(magic)


def test_train_split_frames_hold_the_kept_sample(runs):
    view = snapshots.load_run(runs["flat"], split="train")
    assert len(view.frame(1).labels) == 150
    texts = [t.get_text() for t in plots.epoch_figure(view, 1).texts]
    assert "train split (150 points, the same each epoch" in texts[1]
    assert "train ce" in texts[0] and "test" not in texts[0] + texts[1]   # no test figures


def test_missing_epoch_names_the_epochs_present(runs):
    with pytest.raises(snapshots.PlotError, match=r"no epoch 5; epochs present: 1, 2$"):
        snapshots.load_run(runs["flat"], epochs=[5])
    result = cl("plot", "--run", runs["flat"], "--epoch", "5")
    assert result.exit_code == 1
    assert result.stderr == f"error: {runs['flat']} has no epoch 5; epochs present: 1, 2\n"


@pytest.mark.parametrize("args,written", [
    (["--epoch", "1"], "plots/epoch_001.png"),
    ([], "plots/epoch_002.png"),
    (["--gif"], "plots/features.gif"),
    (["--curves"], "plots/curves.png"),
])
def test_cli_writes_the_default_file_and_says_so(run_copy, args, written):
    result = cl("plot", "--run", run_copy, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {run_copy / written}\n"
    with Image.open(run_copy / written) as im:
        assert im.size == ((1000, 960) if "curves" in written else (800, 650))


def test_the_train_split_has_default_names_of_its_own(run_copy, runs):
    """`--split train` after the test picture (or before it) leaves the other one as it was."""
    assert cl("plot", "--run", run_copy).exit_code == 0
    test_png = (run_copy / "plots" / "epoch_002.png").read_bytes()
    for args, written in ((["--split", "train"], "epoch_002_train.png"),
                          (["--split", "train", "--gif"], "features_train.gif")):
        result = cl("plot", "--run", run_copy, *args)
        assert result.stdout == f"wrote {run_copy / 'plots' / written}\n", result.output
    result = cl("plot", "--split", "train", "--compare", run_copy, runs["wide"])
    assert result.stdout == f"wrote {run_copy / 'plots' / 'compare_train.png'}\n", result.output
    assert (run_copy / "plots" / "epoch_002.png").read_bytes() == test_png


def test_cli_compare_writes_into_the_first_run(run_copy, runs, tmp_path):
    result = cl("plot", "--compare", run_copy, runs["wide"])
    assert result.exit_code == 0, result.output
    assert (run_copy / "plots" / "compare.png").is_file()
    result = cl("plot", "--compare", run_copy, runs["wide"], "--epoch", "1", "-o", tmp_path / "c.svg")
    assert result.stdout == f"wrote {tmp_path / 'c.svg'}\n"


@pytest.mark.parametrize("args,message", [
    (["--gif", "--curves"], "--gif and --curves exclude each other"),
    (["--epoch", "1", "-o", "x.docx"], "cannot write a figure as 'docx'"),
    (["--gif", "--epoch", "1"], "--epoch does not apply to --gif"),
    (["--split", "val"], "--split must be train or test, got 'val'"),
    (["somewhere"], "run folders as arguments are for --compare"),
    (["--compare"], "--compare needs the run folders"),
])
def test_cli_bad_requests_fail_in_one_line(runs, tmp_path, args, message):
    result = cl("plot", "--run", runs["flat"], *args)
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x.docx").exists()


def test_a_folder_without_snapshots_says_how_to_make_them(tmp_path):
    result = cl("plot", "--run", tmp_path)
    assert result.exit_code == 1
    assert "has no feature snapshots" in result.stderr and "cl train --out" in result.stderr


def test_a_broken_snapshot_is_named_in_one_line(run_copy):
    snapshots.snapshot_path(run_copy, 1).write_bytes(b"\x00garbage")
    result = cl("plot", "--run", run_copy, "--epoch", "2")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {snapshots.snapshot_path(run_copy, 1)}: not a valid safetensors")
    assert result.stderr.count("\n") == 1


def test_a_legend_of_many_classes_names_twenty_and_counts_the_rest():
    from centerloss.plots.features import LEGEND_CLASSES, class_colors, legend_handles
    classes = [f"id{k}" for k in range(20_000)]
    labels = [h.get_label() for h in legend_handles(classes, class_colors(len(classes)))]
    assert labels[:LEGEND_CLASSES - 1] == classes[:LEGEND_CLASSES - 1]
    assert labels[LEGEND_CLASSES - 1] == f"and {20_000 - LEGEND_CLASSES + 1:,} more"
    assert len(labels) == LEGEND_CLASSES + 1            # and the center marker's entry
    few = [h.get_label() for h in legend_handles(classes[:10], class_colors(10))]
    assert few[:10] == classes[:10] and len(few) == 11


def test_a_file_named_by_out_is_kept_unless_overwrite(runs, run_copy, tmp_path):
    """cl plot -o onto an existing file of the user's: a one-line error naming --overwrite, the
    file unchanged; with --overwrite it is replaced. The default files in RUN/plots/ are redrawn."""
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my own picture")
    result = cl("plot", "--run", runs["flat"], "--epoch", "1", "-o", mine)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert mine.read_bytes() == b"my own picture"
    gif = tmp_path / "mine.gif"
    gif.write_bytes(b"my own animation")
    assert cl("plot", "--run", runs["flat"], "--gif", "-o", gif).exit_code == 1
    assert gif.read_bytes() == b"my own animation"
    result = cl("plot", "--run", runs["flat"], "--epoch", "1", "-o", mine, "--overwrite")
    assert result.exit_code == 0, result.output
    assert mine.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for _ in range(2):          # cl's own file in RUN/plots/ is redrawn without a word
        result = cl("plot", "--run", run_copy, "--epoch", "1")
        assert result.exit_code == 0, result.output
    assert (run_copy / "plots" / "epoch_001.png").is_file()
