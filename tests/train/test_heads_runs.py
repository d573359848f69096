"""Margin-head runs end to end: checkpoints (old ones too), resume, eval, plots."""
import json

import numpy as np
import pytest
from safetensors.torch import save as st_save
from support.runs import quick_config
from typer.testing import CliRunner

from centerloss import plots
from centerloss.config.config import Config
from centerloss.evaluation.evaluate import evaluate_checkpoint
from centerloss.model.build import build_from_checkpoint
from centerloss.plots import snapshots
from centerloss.store import checkpoint as ckpt_io
from centerloss.train import resume as resume_mod
from centerloss.train.loop import train
from cli.main import app


@pytest.fixture(scope="module")
def cos_run(idx_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("heads") / "cos"
    train(quick_config(idx_root, head="cosface", margin=0.1, scale=16.0, lam=0.1), out)
    return out


def test_head_travels_in_checkpoint_and_eval(cos_run):
    ckpt = ckpt_io.load_checkpoint(cos_run / "model.safetensors")
    assert (ckpt.config.head, ckpt.config.margin, ckpt.config.scale) == ("cosface", 0.1, 16.0)
    assert "classifier.weight" in ckpt.model_state and "feature.1.running_mean" in ckpt.model_state
    report = evaluate_checkpoint(cos_run / "model.safetensors", device="cpu", verify_pairs=200)
    assert report["head"] == "cosface" and report["verification"]["metric"] == "cosine"
    assert 0 <= report["angular_compactness"] and "nearest_center_accuracy" in report
    record = ckpt_io.read_history(cos_run)[-1]
    assert record["test_ce"] > 0 and "angular_compactness" in record


def test_checkpoint_without_head_keys_loads_as_softmax(runs, tmp_path):
    tensors, meta = ckpt_io.read_tensors(runs["flat"] / "model.safetensors")
    config = json.loads(meta["config"])
    for key in ("head", "margin", "scale"):
        config.pop(key)
    old = tmp_path / "old.safetensors"
    old.write_bytes(st_save(tensors, metadata={**meta, "config": json.dumps(config)}))
    ckpt = ckpt_io.load_checkpoint(old)
    assert ckpt.config.head == "softmax"
    build_from_checkpoint(ckpt, old)      # the weights fit the softmax model


def test_resume_refuses_another_head_or_margin(cos_run):
    saved = Config(head="arcface", epochs=4, feature_dim=128)   # the paper's margin, 0.5
    assert resume_mod.resume_config(saved, {"head": "arcface", "margin": 0.5}, 2, 0).margin == 0.5
    with pytest.raises(ValueError, match="--head cosface conflicts"):
        resume_mod.resume_config(saved, {"head": "cosface"}, 2, 0)
    with pytest.raises(ValueError, match="--margin 0.3 conflicts"):
        resume_mod.resume_config(saved, {"margin": 0.3}, 2, 0)
    result = CliRunner().invoke(app, ["train", "--resume", "--out", str(cos_run), "--scale", "30"])
    assert result.exit_code == 2 and "--scale 30.0 conflicts" in result.output


def test_margin_head_is_drawn_on_the_unit_circle_with_class_directions(cos_run, runs, tmp_path):
    view = snapshots.load_run(cos_run)
    frame = view.frame(2)
    assert view.angular and view.limits == snapshots.UNIT_LIMITS
    np.testing.assert_allclose(np.linalg.norm(frame.points, axis=1), 1.0, atol=1e-5)
    ckpt = ckpt_io.load_checkpoint(cos_run / "model.safetensors")
    w = ckpt.model_state["classifier.weight"].double().numpy()
    np.testing.assert_allclose(frame.centers, w / np.linalg.norm(w, axis=1, keepdims=True), atol=1e-6)
    raw = snapshots.load_run(cos_run, raw=True)
    assert not raw.angular and np.linalg.norm(raw.frame(2).points, axis=1).std() > 1e-3
    fig = plots.compare_figure([snapshots.load_run(runs["flat"]), view], [2, 2], ["softmax", "cos"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("softmax, λ = 0.1") and titles[1].startswith("CosFace (m = 0.1, s = 16), λ = 0.1")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-1] == "center, or direction\n(margin heads)"
    out = tmp_path / "mixed.png"
    result = CliRunner().invoke(app, ["plot", "--compare", str(runs["flat"]), str(cos_run), "-o", str(out)])
    assert result.exit_code == 0 and out.stat().st_size > 10_000


def test_train_rejects_bad_head_settings_in_one_line(idx_root, tmp_path):
    cli = CliRunner()
    for flags, words in ((["--head", "normface"], "unknown head"),
                         (["--head", "arcface", "--margin", "2"], "--margin for arcface"),
                         (["--margin", "0.3"], "apply to the margin heads")):
        result = cli.invoke(app, ["train", "--data-dir", str(idx_root), "--out", str(tmp_path / "r"),
                                  *flags])
        assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
        assert not (tmp_path / "r").exists()
