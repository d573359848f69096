"""The live feature view of `cl train`: recent training features as a coloured braille scatter
under the progress bar, one colour per class, the centers marked, axes that follow the cloud.

The loop hands every batch's features to FeatureRing, which copies them into a buffer on the
training device (no host sync per step); the view reads that buffer back only when it redraws.
render_frame is a pure function of the points, so tests check it on a known input."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from centerloss.plots.palette import FEW_COLORS, Color, class_glyphs, class_rgb
from centerloss.plots.projection import Projection

CAPACITY = 3072          # points drawn: the last 24 batches of 128
MIN_ROWS, MIN_COLUMNS = 20, 60   # the smallest terminal where the view is on by default
MAX_PLOT_ROWS = 24
WIDEST = 1.5             # the plot's canvas is at most this many times as many dots across as up
COST_SHARE = 0.02        # redraw at most as often as keeps drawing under 2% of the wall time
GROW, SHRINK = 0.6, 0.1  # how far the axes move towards the cloud per redraw: out fast, in slowly
CENTER_ENTRY = "0  center"    # the legend's last line: a center is its class's index on its colour
@dataclass(frozen=True)
class Limits:
    x0: float
    x1: float
    y0: float
    y1: float


def cloud_limits(points: np.ndarray, centers: np.ndarray, pad: float = 0.08) -> Limits:
    """The box of the 1st to 99th percentile of the points and all centers, padded: a few
    outliers do not squash the cloud into a corner."""
    lo = np.quantile(points, 0.01, axis=0) if len(points) else centers.min(0)
    hi = np.quantile(points, 0.99, axis=0) if len(points) else centers.max(0)
    if len(centers):
        lo, hi = np.minimum(lo, centers.min(0)), np.maximum(hi, centers.max(0))
    span = np.maximum(hi - lo, 1e-3)
    lo, hi = lo - pad * span, hi + pad * span
    return Limits(float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))


def follow(current: Limits | None, target: Limits, grow: float = GROW, shrink: float = SHRINK) -> Limits:
    """Move each edge of the axes part of the way to the target's: `grow` when the cloud spreads
    past it, so few points fall outside for long, `shrink` when it pulls in, so the view stays
    steady while the features settle."""
    if current is None:
        return target
    def edge(now: float, goal: float, outward: bool) -> float:
        return now + (grow if outward else shrink) * (goal - now)
    return Limits(edge(current.x0, target.x0, target.x0 < current.x0),
                  edge(current.x1, target.x1, target.x1 > current.x1),
                  edge(current.y0, target.y0, target.y0 < current.y0),
                  edge(current.y1, target.y1, target.y1 > current.y1))


def square_dots(limits: Limits, dots: tuple[int, int]) -> Limits:
    """Widen the shorter side of the limits so that a unit spans as many braille dots across as
    up (a dot is about square: a cell is 2 dots wide, 4 high and twice as high as wide). As in
    `cl plot`, distances on screen are then true distances, which is what compactness is about."""
    w, h = limits.x1 - limits.x0, limits.y1 - limits.y0
    ratio = dots[0] / dots[1]
    if w / h < ratio:
        pad = (h * ratio - w) / 2
        return Limits(limits.x0 - pad, limits.x1 + pad, limits.y0, limits.y1)
    pad = (w / ratio - h) / 2
    return Limits(limits.x0, limits.x1, limits.y0 - pad, limits.y1 + pad)


def legend_width(classes: Sequence[str]) -> int:
    return min(22, max(len(CENTER_ENTRY), *(len(n) + 3 for n in class_names(classes))))


def class_names(classes: Sequence[str]) -> list[str]:
    return [f"{i} {name}" if name != str(i) else name for i, name in enumerate(classes)]


def plot_size(size: tuple[int, int], classes: Sequence[str], note: str) -> tuple[int, int]:
    """(columns, rows) of the plot within `size`: what the legend and note leave, but at most
    WIDEST times as many dots across as up. With a unit as long across as up (square_dots), a
    wider plot would only add empty margins, and cells to draw and send to the terminal."""
    rows = max(6, size[1] - (1 if note else 0))
    widest = int(WIDEST * 2 * (rows - 3)) + 7       # a cell is 2 dots across and 4 up
    return max(20, min(size[0] - legend_width(classes) - 1, widest)), rows


def canvas_dots(size: tuple[int, int], classes: Sequence[str], note: str) -> tuple[int, int]:
    """About how many braille dots across and up render_frame's canvas has at this size: the
    plot less the y tick labels and frame (7 columns), the frame and x labels (3 rows)."""
    columns, rows = plot_size(size, classes, note)
    return 2 * max(1, columns - 7), 4 * max(1, rows - 3)


def render_frame(points: np.ndarray, labels: np.ndarray, centers: np.ndarray, limits: Limits,
                 size: tuple[int, int], classes: Sequence[str], note: str = "",
                 color_system: str | None = "truecolor") -> RenderableType:
    """The scatter of `points` (N x 2) coloured by `labels`, each center as its class's index on
    its colour, within `limits`, `size` = (columns, rows) in all, the legend to the right.
    `color_system` is the console's (rich's name): on a 16-colour one, the palette's ANSI ten."""
    import plotext  # 0.1 s to import: only when a view is drawn

    colors = class_rgb(len(classes), color_system)
    glyphs = class_glyphs(len(classes), color_system)
    black = 0 if color_system in FEW_COLORS else (0, 0, 0)
    names = class_names(classes)
    legend = legend_width(classes)
    fig = plotext.figure
    fig.clear()
    fig.theme("simple")        # no colours but the classes': readable on dark and light terminals
    fig.legend(active=False)   # drawn by rich beside the plot, where it hides no points
    columns, rows = plot_size(size, classes, note)
    fig.plot_size(columns, rows)
    points, labels = one_per_dot(points, labels, limits, (2 * size[0], 4 * size[1]))
    if len(points):
        # one signal in a fixed shuffled order: where classes share a cell, none is always on top
        order = np.random.default_rng(0).permutation(len(points))
        dots = [plotext.marker(g, plotext.pixel(foreground=c)) for c, g in zip(colors, glyphs)]
        fig.draw(fig.signal(points[order, 0].tolist(), points[order, 1].tolist(),
                            marker=[dots[k] for k in labels[order]]))
    for k, (x, y) in enumerate(centers):
        if limits.x0 <= x <= limits.x1 and limits.y0 <= y <= limits.y1:
            badge = plotext.pixel(foreground=black, background=colors[k], style="bold")
            fig.draw(fig.signal([float(x)], [float(y)], marker=plotext.marker(center_mark(k), badge)))
    for axis, lo, hi in (("x", limits.x0, limits.x1), ("y", limits.y0, limits.y1)):
        ruler = fig.ruler(axis)
        ruler.lim(lo, hi)
        ruler.alignment(lim="edge")    # the limits are the canvas's edges, not its edge cells' middles
        ruler.frequency(5 if axis == "x" else 4)
    plot = Text.from_ansi(fig.build().string(), no_wrap=True)
    plot.rstrip()              # plotext ends with a blank line: the frame is then `rows` high
    key = Text(no_wrap=True, overflow="ellipsis")
    shown = names if len(names) <= rows - 2 else names[:rows - 3]   # no taller than the plot
    for k, name in enumerate(shown):
        swatch = "⣿⣿ " if glyphs[k] == "braille" else glyphs[k] * 2 + " "
        key.append(swatch, style=rgb(colors[k])).append(name + "\n")
    if len(shown) < len(names):
        key.append(f"+{len(names) - len(shown)} more\n", style="dim")
    key.append("\n").append(CENTER_ENTRY[0], style=f"bold black on {rgb(colors[0])}")
    key.append(CENTER_ENTRY[1:])
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(width=legend, no_wrap=True, overflow="ellipsis")
    grid.add_row(plot, key)
    return Group(Text(note, style="dim"), grid) if note else grid


def one_per_dot(points: np.ndarray, labels: np.ndarray, limits: Limits,
                dots: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The points inside the limits, one per class and braille dot of a grid at least as fine as
    the canvas's: plotext spends some 15 us a point, and a tight cluster has many per dot."""
    lo = np.array([limits.x0, limits.y0])
    span = np.array([limits.x1 - limits.x0, limits.y1 - limits.y0])
    cell = np.floor((points - lo) / span * np.array(dots)).astype(np.int64)
    inside = np.all((cell >= 0) & (cell <= np.array(dots)), axis=1)   # the upper edge included
    points, labels, cell = points[inside], labels[inside], cell[inside]
    key = (labels * (dots[0] + 1) + cell[:, 0]) * (dots[1] + 1) + cell[:, 1]
    _, first = np.unique(key, return_index=True)
    return points[first], labels[first]


def center_mark(k: int) -> str:
    """The character that marks class k's center: its index while one digit or letter does."""
    return "0123456789abcdefghijklmnopqrstuvwxyz"[k] if k < 36 else "*"


def rgb(color: Color) -> str:
    """The colour as rich writes a style: rgb(r,g,b), or color(n) for an ANSI number."""
    return f"color({color})" if isinstance(color, int) else "rgb({},{},{})".format(*color)


class Drawn:
    """A renderable laid out once per width: the bar refreshes 4 times a second, and laying out
    a plot of thousands of styled cells each time would cost more than drawing it."""

    def __init__(self, renderable: RenderableType):
        self.renderable = renderable
        self.width = -1
        self.lines: list[list[Segment]] = []

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width != self.width:
            self.lines = console.render_lines(self.renderable, options, pad=False)
            self.width = options.max_width
        for line in self.lines:
            yield from line
            yield Segment.line()


class FeatureRing:
    """The last CAPACITY features and labels of training, kept on the training device. add()
    queues copies only (no host sync); read() waits for the device and returns them."""

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.features: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.next = 0
        self.count = 0

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.features is None:
            self.features = torch.zeros(self.capacity, features.shape[1], device=features.device)
            self.labels = torch.zeros(self.capacity, dtype=torch.long, device=labels.device)
        m = min(features.shape[0], self.capacity)
        features, labels = features[-m:], labels[-m:]
        first = min(m, self.capacity - self.next)       # up to the end of the buffer, then wrap
        self.features[self.next:self.next + first].copy_(features[:first])
        self.labels[self.next:self.next + first].copy_(labels[:first])
        if first < m:
            self.features[:m - first].copy_(features[first:])
            self.labels[:m - first].copy_(labels[first:])
        self.next = (self.next + m) % self.capacity
        self.count = min(self.capacity, self.count + m)

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        if self.features is None:
            return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
        return self.features[:self.count].cpu().numpy(), self.labels[:self.count].cpu().numpy()


class LiveView:
    """What the reporter draws under the bar: call redraw() when the bar refreshes; `frame` is
    the latest picture. The axes move smoothly between redraws (follow)."""

    def __init__(self, classes: Sequence[str], dim: int, color_system: str | None = "truecolor"):
        self.classes = list(classes)
        self.color_system = color_system
        self.ring = FeatureRing()
        self.centers: torch.Tensor | None = None
        self.dim = dim
        self.projection: Projection | None = None     # fitted per epoch for wider features
        self.limits: Limits | None = None
        self.frame: RenderableType | None = None
        self.epoch = 0
        self.next_draw = 0.0
        self.draws = 0               # how many redraws and their seconds, for bench/live_bench.py
        self.draw_seconds = 0.0

    def add(self, features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> None:
        self.ring.add(features, labels)
        self.centers = centers

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.next_draw = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_draw

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, str] | None:
        """(points, labels, centers, note) in 2-D, read back from the device, or None before
        the first batch. The note names the projection of wider features."""
        features, labels = self.ring.read()
        if len(features) == 0:
            return None
        centers = self.centers.detach().float().cpu().numpy()
        if self.dim <= 2:
            return features, labels, centers, ""
        if self.projection is None or self.projection.fitted_on != self.epoch:
            self.projection = Projection.fit(features, self.epoch, like=self.projection)
        return self.projection(features), labels, self.projection(centers), self.projection.note()

    def redraw(self, size: tuple[int, int]) -> None:
        start = time.perf_counter()
        snap = self.snapshot()
        if snap is None:
            return
        features, labels, centers, note = snap
        target = square_dots(cloud_limits(features, centers), canvas_dots(size, self.classes, note))
        self.limits = follow(self.limits, target)
        self.frame = Drawn(render_frame(features, labels, centers, self.limits, size, self.classes, note,
                                        self.color_system))
        cost = time.perf_counter() - start
        self.draws += 1
        self.draw_seconds += cost
        self.next_draw = time.perf_counter() + cost / COST_SHARE
