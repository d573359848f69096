"""The live feature view's pieces: the renderer on known points, the axes, the device ring."""
from __future__ import annotations

import time

import numpy as np
import torch
from rich.console import Console

from centerloss.plots.palette import STANDARD10, class_colors as plot_colors, class_rgb as class_colors
from centerloss.plots.projection import Projection
from cli import liveview
from cli.liveview import FeatureRing, Limits, cloud_limits, follow, render_frame
from cli.render import fixed, view_wanted

CLASSES = ["zero", "one", "two"]
BOX = Limits(-2.0, 2.0, -1.0, 3.0)


def cells(frame, width: int = 80) -> list[list[tuple[str, object]]]:
    """The frame as rows of (character, style) cells, as a terminal would show it."""
    console = Console(width=width, color_system="truecolor", force_terminal=True)
    lines = console.render_lines(frame, console.options, pad=False)
    rows = []
    for line in lines:
        row = []
        for seg in line:
            row.extend((ch, seg.style) for ch in seg.text)
        rows.append(row)
    return rows


def canvas(rows) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the plot's canvas: inside its box of ┌ ┐ └ ┘."""
    text = ["".join(ch for ch, _ in row) for row in rows]
    top = next(i for i, t in enumerate(text) if "┌" in t)
    bottom = next(i for i, t in enumerate(text) if "└" in t)
    left, right = text[top].index("┌"), text[top].index("┐")
    return top + 1, left + 1, bottom - top - 1, right - left - 1


def marks(rows, top, left, height, width) -> dict[tuple[int, int], tuple[str, object]]:
    """Every non-blank cell of the canvas, by (row, column) inside it."""
    return {(r, c): rows[top + r][left + c] for r in range(height) for c in range(width)
            if rows[top + r][left + c][0] != " "}


def is_braille(ch: str) -> bool:
    return 0x2800 < ord(ch) <= 0x28FF


def at_cell(row: int, col: int, height: int, width: int, box: Limits = BOX) -> list[float]:
    """The data point in the middle of canvas cell (row, col)."""
    return [box.x0 + (col + 0.5) / width * (box.x1 - box.x0),
            box.y1 - (row + 0.5) / height * (box.y1 - box.y0)]


def geometry() -> tuple[int, int, int, int]:
    rows = cells(render_frame(np.zeros((0, 2)), np.zeros(0, int), np.zeros((0, 2)), BOX, (70, 16), CLASSES))
    return canvas(rows)


def test_points_land_in_their_cells_in_their_class_colour():
    top, left, height, width = geometry()
    want = {(1, 2): 0, (height // 2, width // 2): 1, (height - 2, width - 3): 2}
    points = np.array([at_cell(r, c, height, width) for r, c in want])
    labels = np.array(list(want.values()))
    rows = cells(render_frame(points, labels, np.zeros((0, 2)), BOX, (70, 16), CLASSES))
    assert canvas(rows) == (top, left, height, width)    # the frame does not move with the data
    got = marks(rows, top, left, height, width)
    assert set(got) == set(want)
    colors = class_colors(3)
    for cell, k in want.items():
        ch, style = got[cell]
        assert is_braille(ch)
        assert style.color.triplet == colors[k]


def test_a_16_colour_terminal_keeps_ten_classes_apart_and_more_by_glyph():
    """rich turns tab10 into fewer than ten of a 16-colour terminal's colours (5 and 7 grey, 0 and
    9 cyan): there the ten classes take ten distinct ANSI colours, and classes past ten take the
    colours again with a glyph of their own."""
    from rich.color import Color, ColorSystem
    downgraded = [Color.from_rgb(*c).downgrade(ColorSystem.STANDARD).number for c in class_colors(10)]
    assert len(set(downgraded)) < 10                       # why tab10 will not do there
    classes = [str(k) for k in range(12)]
    assert len(set(class_colors(10, "standard"))) == 10
    assert not {0, 7, 15} & set(class_colors(10, "standard"))   # black and white vanish on a background
    top, left, height, width = canvas(cells(render_frame(
        np.zeros((0, 2)), np.zeros(0, int), np.zeros((0, 2)), BOX, (70, 16), classes,
        color_system="standard")))
    want = {(1 + k % 2, 2 + 3 * k): k for k in range(12)}
    points = np.array([at_cell(r, c, height, width) for r, c in want])
    rows = cells(render_frame(points, np.array(list(want.values())), np.zeros((0, 2)), BOX,
                              (70, 16), classes, color_system="standard"))
    got = marks(rows, top, left, height, width)
    drawn = {k: got[cell] for cell, k in want.items()}
    numbers = [drawn[k][1].color.number for k in range(12)]
    assert numbers[:10] == list(STANDARD10) and numbers[10:] == numbers[:2]
    assert all(is_braille(drawn[k][0]) for k in range(10))
    assert drawn[10][0] == "+" and drawn[11][0] == "+"     # the second ten: colour again, glyph "+"
    text = ["".join(ch for ch, _ in row) for row in rows]
    assert any(t.rstrip().endswith("++ 10") for t in text)  # the legend shows the glyph


def test_points_outside_the_limits_are_left_out_and_corners_stay_inside():
    top, left, height, width = geometry()
    points = np.array([[BOX.x0, BOX.y0], [BOX.x1, BOX.y1], [BOX.x1 + 1, 0.0], [0.0, BOX.y0 - 1]])
    got = marks(cells(render_frame(points, np.array([0, 1, 2, 2]), np.zeros((0, 2)), BOX, (70, 16),
                                   CLASSES)), top, left, height, width)
    assert set(got) == {(height - 1, 0), (0, width - 1)}


def test_centers_are_their_class_index_on_its_colour_and_the_legend_names_every_class():
    top, left, height, width = geometry()
    centers = np.array([at_cell(3, 5, height, width), at_cell(8, 20, height, width),
                        at_cell(12, 30, height, width)])
    rows = cells(render_frame(np.zeros((0, 2)), np.zeros(0, int), centers, BOX, (70, 16), CLASSES))
    got = marks(rows, top, left, height, width)
    colors = class_colors(3)
    assert {cell: ch for cell, (ch, _) in got.items()} == {(3, 5): "0", (8, 20): "1", (12, 30): "2"}
    assert all(got[cell][1].bgcolor.triplet == colors[k]
               for k, cell in enumerate([(3, 5), (8, 20), (12, 30)]))
    text = ["".join(ch for ch, _ in row) for row in rows]
    for k, name in enumerate(CLASSES):
        line = next(i for i, t in enumerate(text) if t.rstrip().endswith(f"{k} {name}"))
        swatch = text[line].index("⣿", left + width)
        assert rows[line][swatch][1].color.triplet == colors[k]
    assert any(t.rstrip().endswith("0  center") for t in text)


def test_a_long_legend_is_cut_to_the_plot_height():
    classes = [f"person {i}" for i in range(40)]
    frame = render_frame(np.array([[0.0, 0.0]]), np.array([39]), np.zeros((0, 2)), BOX, (90, 16), classes)
    text = ["".join(ch for ch, _ in row) for row in cells(frame, 90)]
    assert len(text) == 16 and any("+27 more" in t for t in text)
    assert any(t.rstrip().endswith("12 person 12") for t in text)


def test_axis_labels_show_the_limits():
    rows = cells(render_frame(np.array([[0.0, 0.0]]), np.array([0]), np.zeros((0, 2)),
                              Limits(-7.5, 12.5, 100.0, 300.0), (70, 16), CLASSES))
    text = "\n".join("".join(ch for ch, _ in row) for row in rows)
    assert "-7.5" in text and "300" in text and "100" in text


def test_limits_hold_the_bulk_of_the_cloud_and_every_center():
    rng = np.random.default_rng(0)
    points = rng.normal(0, 1, (2000, 2))
    points[0] = [50, -50]                     # one outlier does not set the axes
    lim = cloud_limits(points, np.array([[3.5, 0.0]]))
    assert -3.5 < lim.x0 < -2 and 3.5 < lim.x1 < 4.5 and -3.5 < lim.y0 < -2 and 2 < lim.y1 < 3.5


def test_square_dots_widen_the_short_side_around_its_middle():
    tall = liveview.square_dots(Limits(0, 1, 0, 4), (200, 100))     # wants 2 units across per unit up
    assert tall == Limits(-3.5, 4.5, 0, 4)
    wide = liveview.square_dots(Limits(0, 10, 0, 1), (200, 100))
    assert wide == Limits(0, 10, -2, 3)
    top, left, height, width = geometry()       # the estimate of the canvas is close to the real one
    across, up = liveview.canvas_dots((70, 16), CLASSES, "")
    assert abs(across - 2 * width) <= 0.05 * across and up == 4 * height
    assert across <= liveview.WIDEST * up + 2     # no wider than square units can fill


def test_axes_follow_the_cloud_out_fast_and_in_slowly():
    small, big = Limits(-1, 1, -1, 1), Limits(-10, 10, -10, 10)
    out = follow(small, big)
    back = follow(big, small)
    assert out.x1 - small.x1 > 5 * (big.x1 - back.x1)     # moves out faster than in
    assert small.x1 < out.x1 < big.x1 and small.x1 < back.x1 < big.x1
    lim = big
    for _ in range(60):
        lim = follow(lim, small)
    assert abs(lim.x1 - 1) < 0.05 and abs(lim.y0 + 1) < 0.05   # it gets there
    assert follow(None, small) == small


def test_many_points_on_one_dot_reach_plotext_once():
    points = np.concatenate([np.full((500, 2), 0.5), np.full((500, 2), 0.5), [[1.5, 1.5]]])
    labels = np.array([0] * 500 + [1] * 500 + [0])
    kept, kept_labels = liveview.one_per_dot(points, labels, BOX, (140, 64))
    assert len(kept) == 3 and sorted(kept_labels.tolist()) == [0, 0, 1]


def test_ring_keeps_the_latest_points_with_their_labels():
    ring = FeatureRing(capacity=8)
    for start in range(0, 15, 5):             # 15 points in batches of 5: wraps around
        i = torch.arange(start, start + 5)
        ring.add(torch.stack([i.float(), -i.float()], 1), i % 3)
    features, labels = ring.read()
    assert sorted(features[:, 0].tolist()) == list(range(7, 15))
    assert np.array_equal(labels, features[:, 0].astype(int) % 3)
    assert np.array_equal(features[:, 1], -features[:, 0])
    big = torch.arange(20).float()
    ring.add(torch.stack([big, big], 1), torch.zeros(20, dtype=torch.long))   # wider than the ring
    assert sorted(ring.read()[0][:, 0].tolist()) == list(range(12, 20))


def test_projection_keeps_the_widest_directions_and_their_sign():
    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (500, 5)) * np.array([0.1, 5, 0.1, 2, 0.1])
    proj = Projection.fit(features, epoch=1)
    assert np.allclose(np.abs(proj.axes[[1, 3]]), np.eye(2), atol=0.05)
    assert proj.kept > 0.95 and "PCA of 5-D" in proj.note() and "epoch 1" in proj.note()
    again = Projection.fit(-features, epoch=2, like=proj)   # the cloud mirrored: the axes must not flip
    assert np.allclose(again.axes, proj.axes, atol=0.05)


def test_the_live_view_and_cl_plot_share_one_palette():
    """Beyond ten classes too: class k has one colour in every picture."""
    for n in (3, 10, 15, 40):
        rgba = plot_colors(n)
        assert class_colors(n) == [tuple(int(round(255 * v)) for v in c[:3]) for c in rgba]
        assert len(set(class_colors(n))) == n


def test_numbers_on_the_bar_keep_their_width():
    for value in (0.8123, 9.99996, 12.3456, 123.456, 4321.0, float("nan")):
        assert len(fixed(value)) == 6, value
    assert fixed(0.8123) == "0.8123" and fixed(12.3456) == "12.346"


def test_the_view_is_on_by_default_for_2d_features_on_a_tall_terminal_only():
    tall = Console(width=100, height=40, force_terminal=True)
    short = Console(width=100, height=liveview.MIN_ROWS - 1, force_terminal=True)
    assert view_wanted(None, 2, tall) and not view_wanted(None, 128, tall)
    assert not view_wanted(None, 2, short) and view_wanted(True, 2, short)
    assert view_wanted(True, 128, tall) and not view_wanted(False, 2, tall)
    assert not view_wanted(True, 1, tall)


def test_wider_features_are_drawn_through_a_pca_named_in_the_view():
    view = liveview.LiveView(CLASSES, dim=4)
    view.start_epoch(3)
    g = torch.Generator().manual_seed(0)
    view.add(torch.randn(300, 4, generator=g) * torch.tensor([3.0, 0.1, 2.0, 0.1]),
             torch.arange(300) % 3, torch.zeros(3, 4))
    view.redraw((80, 20))
    # the next redraw waits long enough that drawing takes COST_SHARE of the time at most
    wait = view.next_draw - time.perf_counter()
    assert wait > 0.5 * view.draw_seconds / liveview.COST_SHARE and not view.due(time.perf_counter())
    text = "\n".join("".join(ch for ch, _ in row) for row in cells(view.frame))
    assert "PCA of 4-D features, fitted in epoch 3" in text
    assert sum(map(is_braille, text)) > 50
