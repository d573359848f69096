"""Feature figures of a run: the features of an epoch, a GIF of all epochs, runs side by side.

Figures are built as matplotlib.figure.Figure objects on the Agg canvas, never through pyplot,
so no global figure state exists to leak between plots and no display is ever needed. Every
figure has a fixed size and fixed axes positions: the frames of a GIF line up pixel for pixel."""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import matplotlib.patches
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from centerloss.plots.palette import class_colors
from centerloss.plots.save import DPI
from centerloss.plots.snapshots import Frame, PlotError, RunFrames, frame_limits
from centerloss.store.files import atomic_write

EPOCH_SIZE = (8.0, 6.5)                         # inches: 800 x 650 pixels
EPOCH_AXES = (0.1, 0.08, 0.6, 0.76)             # left, bottom, width, height in figure fractions
PANEL_INCHES = 4.4                              # one square panel of a comparison
LEGEND_CLASSES = 20                             # the most classes a legend names one by one
LEGEND_INCHES = 2.1                             # the legend column right of the panels
DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "kmnist": "KMNIST"}
MODEL_TITLES = {"lenetspp": "LeNets++", "seed": "seed net"}
HEAD_TITLES = {"sphereface": "SphereFace", "cosface": "CosFace", "arcface": "ArcFace"}


def dataset_title(name: str, data_dir: str = "") -> str:
    """The data set as a title says it: MNIST, Fashion-MNIST, ...; an image folder by its name."""
    if name == "folder" and Path(data_dir).name:
        return Path(data_dir).name
    return DATASET_TITLES.get(name, name)


def _fit_aspect(limits, box_ratio: float):
    """Widen the shorter side of the limits so one unit is as long on x as on y: distances in
    the picture are then true distances, which is what compactness is about."""
    (x0, x1), (y0, y1) = limits
    w, h = x1 - x0, y1 - y0
    if w / h < box_ratio:
        pad = (h * box_ratio - w) / 2
        x0, x1 = x0 - pad, x1 + pad
    else:
        pad = (w / box_ratio - h) / 2
        y0, y1 = y0 - pad, y1 + pad
    return (x0, x1), (y0, y1)


def head_title(cfg, settings: bool = True) -> str:
    """The head of a run's config as a title says it: softmax, or the margin head (and its m, s)."""
    if cfg.head == "softmax":
        return "softmax"
    return HEAD_TITLES[cfg.head] + (f" (m = {cfg.margin:g}, s = {cfg.scale:g})" if settings else "")


def draw_features(ax, frame: Frame, colors: np.ndarray, limits, projected: bool,
                  angular: bool = False) -> None:
    """One epoch's features, one color per class, its centers as large black-edged stars; for
    a margin head's normalised features the unit circle, and rays out to the class directions."""
    n = len(frame.labels)
    if angular:
        if not projected:
            ax.add_patch(matplotlib.patches.Circle((0, 0), 1.0, fill=False, color="gray", lw=0.8))
        for k, (x, y) in enumerate(frame.centers):
            ax.plot([0, x], [0, y], color=colors[k], lw=0.9, alpha=0.7, zorder=0.5)
    # Draw in a fixed random order so that no class is always painted over the others.
    order = np.random.default_rng(0).permutation(n)
    # on the circle every point of a class falls on one arc: larger dots keep the arcs visible
    size = float(np.clip((90000 if angular else 30000) / max(n, 1), 2, 16))
    ax.scatter(frame.points[order, 0], frame.points[order, 1], c=colors[frame.labels[order]],
               s=size, alpha=0.6, linewidths=0, rasterized=True)
    ax.scatter(frame.centers[:, 0], frame.centers[:, 1], c=colors[:len(frame.centers)], s=260,
               marker="*", edgecolors="black", linewidths=1.3, zorder=3)
    box = ax.get_position()
    fig_w, fig_h = ax.figure.get_size_inches()
    (x0, x1), (y0, y1) = _fit_aspect(limits, box.width * fig_w / (box.height * fig_h))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    what = "normalised feature" if angular else "feature"
    ax.set_xlabel("principal axis 1" if projected else f"{what} 1")
    ax.set_ylabel("principal axis 2" if projected else f"{what} 2")
    ax.grid(True, alpha=0.25)


def marks_label(views: list[RunFrames]) -> str:
    kinds = {v.angular for v in views}
    return ("class center" if kinds == {False} else "class direction" if kinds == {True}
            else "center, or direction\n(margin heads)")


def legend_handles(classes: list[str], colors: np.ndarray, marks: str = "class center") -> list[Line2D]:
    """One entry per class up to LEGEND_CLASSES, then a line that counts the rest: a legend of
    20,000 identities took minutes to lay out and could not be read."""
    shown = classes if len(classes) <= LEGEND_CLASSES else classes[:LEGEND_CLASSES - 1]
    handles = [Line2D([], [], linestyle="", marker="o", markersize=8, color=colors[i], label=name)
               for i, name in enumerate(shown)]
    if len(shown) < len(classes):
        handles.append(Line2D([], [], linestyle="", label=f"and {len(classes) - len(shown):,} more"))
    handles.append(Line2D([], [], linestyle="", marker="*", markersize=15, markerfacecolor="white",
                          markeredgecolor="black", label=marks))
    return handles


def percent(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "n/a"


def number(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


def view_note(view: RunFrames, frame: Frame) -> str:
    """What the axes show: raw 2-D features, or the run's PCA and how much of the epoch it keeps."""
    p = view.projection
    angular = "normalised features (the head's view; --raw for the features as learned)"
    if not p.is_pca:
        return f"2-D {angular}" if view.angular else "2-D features as learned"
    return (f"PCA of {p.feature_dim}-D {angular if view.angular else 'features'}, fitted once on epoch {p.fitted_on}: "
            f"shows {100 * frame.kept_variance:.0f}% of this epoch's variance")


def epoch_figure(view: RunFrames, epoch: int) -> Figure:
    """The features of one epoch on the run's fixed axes, titled with what the run is."""
    frame = view.frame(epoch)
    cfg = view.config
    colors = class_colors(len(view.classes))
    fig = Figure(figsize=EPOCH_SIZE, dpi=DPI)
    ax = fig.add_axes(EPOCH_AXES)
    draw_features(ax, frame, colors, view.limits, view.projection.is_pca, view.angular)
    head = "" if cfg.head == "softmax" else f"{head_title(cfg, False)}  ·  "
    if view.split == "train":   # the test split's figures would describe other points
        headline = (f"train ce {number(frame.metrics, 'train_ce')}, center "
                    f"{number(frame.metrics, 'train_center')} (epoch means)")
        detail = (f"({len(frame.labels):,} points, the same each epoch, through the epoch's "
                  f"final model)")
    else:
        headline = f"test accuracy {percent(frame.metrics, 'test_accuracy')}"
        detail = (f"({len(frame.labels):,} points)  ·  nearest-center accuracy "
                  f"{percent(frame.metrics, 'nearest_center_accuracy')}  ·  compactness "
                  f"{number(frame.metrics, 'compactness')}")
    fig.text(0.03, 0.955, f"{dataset_title(view.dataset, cfg.data_dir)}  ·  {head}λ = {cfg.lam:g}  ·  "
             f"epoch {epoch}/{cfg.epochs}  ·  {headline}", fontsize=13, weight="bold", va="center")
    fig.text(0.03, 0.905, f"{MODEL_TITLES.get(cfg.model, cfg.model)}, {view.split} split {detail}",
             fontsize=10, va="center")
    note = view_note(view, frame)
    fig.text(0.03, 0.87, note if cfg.head == "softmax" else f"{head_title(cfg)}  ·  {note}",
             fontsize=9, color="dimgray", va="center")
    fig.legend(handles=legend_handles(view.classes, colors, marks_label([view])), loc="center left",
               bbox_to_anchor=(0.72, 0.46), frameon=False, fontsize=10, title="class",
               alignment="left")
    return fig


def render_rgb(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def gif_palette(images: list[Image.Image], colors: np.ndarray) -> Image.Image:
    """One 256-color palette for every frame, so that colors do not flicker: the exact class
    colors and a ramp of grays (text, axes, grid) first, since a fitted palette shifts them and a
    gray class or gridline turns purple or green, then the blends fitted to up to 8 frames stacked."""
    grays = [(v, v, v) for v in np.linspace(0, 255, 18).round().astype(int).tolist()]
    exact = [tuple(int(round(255 * v)) for v in c[:3]) for c in colors] + grays
    exact = list(dict.fromkeys(exact))[:128]
    sample = [images[i] for i in sorted({round(k * (len(images) - 1) / 7) for k in range(8)})]
    strip = Image.new("RGB", (sample[0].width, sample[0].height * len(sample)))
    for k, im in enumerate(sample):
        strip.paste(im, (0, k * im.height))
    fitted = strip.quantize(colors=256 - len(exact), method=Image.Quantize.MAXCOVERAGE)
    rgb = [v for c in exact for v in c] + fitted.getpalette()[:3 * (256 - len(exact))]
    palette = Image.new("P", (1, 1))
    palette.putpalette(rgb + [0] * (768 - len(rgb)))
    return palette


def write_gif(view: RunFrames, path: Path | str, fps: float = 2.0, hold_last_s: float = 2.0) -> Path:
    """An animated GIF of every loaded epoch on the same axes, looping, the last frame held
    longer. Pillow encodes it."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise PlotError(f"{path}: an animation is written as .gif; name the file *.gif")
    if not fps > 0:
        raise PlotError(f"--fps must be > 0, got {fps}")
    epochs = sorted(view.frames)
    images = [Image.fromarray(render_rgb(epoch_figure(view, e))) for e in epochs]
    palette = gif_palette(images, class_colors(len(view.classes)))
    frames = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    step_ms = max(20, round(1000 / fps))
    durations = [step_ms] * (len(frames) - 1) + [max(step_ms, round(1000 * hold_last_s))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations,
                   loop=0, optimize=False, disposal=1)
    atomic_write(path, buf.getvalue())
    return path


def compare_figure(views: list[RunFrames], epochs: list[int], names: list[str]) -> Figure:
    """One panel per run, side by side (at most three to a row), each on its own limits and titled with
    its lambda, accuracy and compactness: softmax alone next to center loss, say."""
    classes = views[0].classes
    for view in views[1:]:
        if view.classes != classes:
            raise PlotError(f"{view.run} has other classes than {views[0].run} "
                            f"({view.dataset} vs {views[0].dataset}); compare runs of one data set")
    rows = math.ceil(len(views) / 3)
    cols = math.ceil(len(views) / rows)       # rows as full as can be: 4 runs are 2 x 2, not 3 + 1
    head, gap, side = 0.6, 1.0, 1.0             # inches: title band, room for titles and labels
    width = cols * (PANEL_INCHES + side) + LEGEND_INCHES
    height = head + rows * (PANEL_INCHES + gap)
    fig = Figure(figsize=(width, height), dpi=DPI)
    colors = class_colors(len(classes))
    mixed = any(v.config.head != "softmax" for v in views)   # then every panel names its head
    for i, (view, epoch, name) in enumerate(zip(views, epochs, names)):
        r, c = divmod(i, cols)
        left = (side + c * (PANEL_INCHES + side)) / width
        bottom = (height - head - (r + 1) * (PANEL_INCHES + gap) + 0.55) / height
        ax = fig.add_axes((left, bottom, PANEL_INCHES / width, PANEL_INCHES / height))
        frame = view.frame(epoch)
        limits = view.limits if view.angular else frame_limits([frame])
        draw_features(ax, frame, colors, limits, view.projection.is_pca, view.angular)
        m = frame.metrics
        proj = (f", PCA of {view.projection.feature_dim}-D ({100 * frame.kept_variance:.0f}%)"
                if view.projection.is_pca else "")
        named = f"{head_title(view.config)}, " if mixed else ""
        ax.set_title(f"{named}λ = {view.config.lam:g}  ·  "
                     f"acc {percent(m, 'test_accuracy')}\ncompactness {number(m, 'compactness')}  ·  "
                     f"angular {number(m, 'angular_compactness')}\n{name}, epoch {epoch}{proj}",
                     fontsize=10.5)
    same = len(set(epochs)) == 1
    fig.text(0.3 / width, 1 - 0.35 / height,
             f"{dataset_title(views[0].dataset, views[0].config.data_dir)}, {views[0].split} split, "
             f"{'epoch ' + str(epochs[0]) if same else 'last epochs'}: features of "
             f"{len(views)} runs", fontsize=13, weight="bold", va="center")
    fig.legend(handles=legend_handles(classes, colors, marks_label(views)), loc="center left",
               bbox_to_anchor=(1 - (LEGEND_INCHES - 0.1) / width, 0.5), frameon=False,
               fontsize=10, title="class", alignment="left")
    return fig

