"""The ROC figure: a real image with one line per curve, on a log axis that starts where the data do."""
import numpy as np
import pytest
import torch
from PIL import Image

from centerloss.evaluation.verification import roc
from centerloss.plots.roc import roc_figure, save_roc

SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
SAME = torch.tensor([1, 1, 0, 1, 0, 1, 0, 0], dtype=torch.bool)


def test_save_roc_writes_the_figure(tmp_path):
    fpr, tpr, _ = roc(SCORES, SAME)
    path = save_roc(tmp_path / "roc.png", {"lambda 0.1": (fpr, tpr), "chance": (fpr, fpr)})
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] == 600 and im.size[1] > 500   # legend below
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels < 200).any(axis=2).mean() > 0.01          # lines and text, not a blank page
    assert not list(tmp_path.glob(".*.tmp"))                  # written atomically, no leftovers


def test_axis_and_legend():
    fpr, tpr, _ = roc(SCORES, SAME)
    fig = roc_figure({"run": (fpr, tpr)}, title="t")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlim()[0] == pytest.approx(0.25)            # 1 of 4 non-matching pairs
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["run (AUC 0.8125)"]
    legend_top = fig.legends[0].get_window_extent(fig.canvas.get_renderer()).y1
    assert legend_top < ax.get_window_extent().y0              # under the axes: it hides no curve
    assert "FAR 0.01" not in [t.get_text() for t in ax.texts]  # below the axis' start: not drawn
    wide = roc_figure({"run": (torch.tensor([0.0, 1e-4, 1.0]), torch.tensor([0.0, 0.5, 1.0]))})
    assert {"FAR 0.001", "FAR 0.01"} <= {t.get_text() for t in wide.axes[0].texts}


def test_an_unknown_extension_is_refused(tmp_path):
    fpr, tpr, _ = roc(SCORES, SAME)
    with pytest.raises(ValueError, match="cannot write a figure as 'txt'"):
        save_roc(tmp_path / "roc.txt", {"run": (fpr, tpr)})
    assert not (tmp_path / "roc.txt").exists()


def test_snapshot_curves_give_one_curve_per_run_from_its_stored_features(runs):
    from centerloss.evaluation.verification import verify_features
    from centerloss.plots.roc import snapshot_curves
    from centerloss.store.checkpoint import read_tensors
    curves = snapshot_curves([runs["flat"], runs["wide"]], epoch=2)
    labels = list(curves)
    assert len(labels) == 2 and "λ = 0.1, epoch 2" in labels[0] and "λ = 0, epoch 2" in labels[1]
    tensors, _ = read_tensors(runs["wide"] / "features" / "epoch_002.safetensors")
    expected = verify_features(tensors["test_features"], tensors["test_labels"])
    torch.testing.assert_close(curves[labels[1]][1], expected.tpr)


def test_cl_plot_roc_writes_a_png_and_names_missing_epochs(runs, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    out = tmp_path / "roc.png"
    result = CliRunner().invoke(app, ["plot", "--roc", str(runs["flat"]), str(runs["wide"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.format == "PNG"
    result = CliRunner().invoke(app, ["plot", "--roc", "--run", str(runs["flat"]), "--epoch", "9"])
    assert result.exit_code == 1 and "epochs present: 1, 2" in result.output


def good_curve(seed: int, overlap: float):
    """The ROC of 3,000 matching and 3,000 non-matching pairs, well apart: TAR near 1 throughout."""
    g = torch.Generator().manual_seed(seed)
    same = torch.cat([torch.ones(3000), torch.zeros(3000)]).bool()
    scores = torch.cat([1 + overlap * torch.randn(3000, generator=g), 0.2 * torch.randn(3000, generator=g)])
    fpr, tpr, _ = roc(scores, same)
    return fpr, tpr, 3000


def test_good_models_part_on_a_zoomed_axis_and_few_impostors_are_said():
    """Two good models (TAR above 0.9 at every FAR drawn) no longer lie together on the top edge,
    and a TAR at FAR 1e-3 of 3,000 impostor pairs, which rests on 3 of them, says so."""
    from centerloss.plots.roc import impostors_at_far
    curves = {"a": good_curve(0, 0.25), "b": good_curve(1, 0.3)}
    fig = roc_figure(curves)
    low, high = fig.axes[0].get_ylim()
    assert 0.5 <= low < min(float(c[1][c[0] <= 1 / 3000 + 1e-12].max()) for c in curves.values())
    assert high == pytest.approx(1.005)
    fpr, tpr, n = curves["a"]
    assert impostors_at_far(fpr, tpr, 1e-3, n) == 3 and impostors_at_far(fpr, tpr, 1e-2, n) == 30
    notes = [t.get_text() for t in fig.texts if t.get_text().startswith("TAR at FAR")]
    assert notes == ["TAR at FAR 0.001 rests on few pairs: 3 / 3 of 3,000 impostors above the "
                     "threshold (legend order)"]                 # FAR 0.01's 30 pairs are enough
    plain = roc_figure({"a": curves["a"][:2]})                   # the count unknown: no note
    assert not [t for t in plain.texts if t.get_text().startswith("TAR at FAR")]
