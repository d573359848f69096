"""`cl train` on an image folder and with resnet18, `cl eval --verify` and `--pairs`, and their
one-line errors."""
import json

import pytest
from support.data import make_folder, train_folder_run
from typer.testing import CliRunner

from centerloss.model.build import build_from_checkpoint
from centerloss.store import checkpoint as ckpt_io
from cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_folder_run(tmp_path_factory.mktemp("cli"))


def test_train_on_a_folder_with_resnet18_writes_a_checkpoint_that_knows_its_input(tmp_path):
    data = make_folder(tmp_path / "faces", classes=3, per_class=6, size=8, rgb=False)   # 15 train
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--dataset", "folder", "--data-dir", str(data),
                                 "--model", "resnet18", "--feature-dim", "4", "--image-size", "8",
                                 "--epochs", "1", "--batch-size", "16", "--device", "cpu",
                                 "--workers", "0", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("epoch 1/1")
    ckpt = ckpt_io.load_checkpoint(out / "model.safetensors")
    assert ckpt.input_shape == [1, 8, 8] and ckpt.classes == ["class_0", "class_1", "class_2"]
    assert ckpt.config.model == "resnet18" and ckpt.config.data_dir == str(data.resolve())
    assert len(ckpt.normalization["mean"]) == 1 and ckpt.normalization["std"][0] > 0


def test_a_small_folder_run_says_its_real_batch_its_coarse_test_split_and_its_name(tmp_path):
    """54 training images in batches of 128 are one batch of 54; 6 test images move accuracy in
    16.7% steps; lambda 10 on 2-D features collapses them; the plots name the folder."""
    from centerloss import plots
    from centerloss.plots import snapshots
    data = make_folder(tmp_path / "flowers", classes=3, per_class=20, size=8, rgb=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--dataset", "folder", "--data-dir", str(data),
                                 "--model", "seed", "--image-size", "8", "--epochs", "1",
                                 "--lambda", "10", "--device", "cpu", "--workers", "0",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "on folder (54 train / 6 test)" in text and "of 1 batch of 54," in text
    assert "note: the test split holds 6 images, so test accuracy moves in steps of 16.7%" in text
    assert "note: lambda 10 with 2-D features: the center loss outweighs softmax" in text
    assert "flowers  ·" in plots.curves_figure(out).texts[0].get_text()
    fig = plots.epoch_figure(snapshots.load_run(out), 1)
    assert fig.texts[0].get_text().startswith("flowers  ·  λ = 10")


def test_eval_verify_reports_the_verification_figures(run):
    _, run_dir = run
    result = runner.invoke(app, ["eval", "--run", str(run_dir), "--device", "cpu", "--verify",
                                 "--num-pairs", "200", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    v = report["verification"]
    assert v["pairs"] == 200 and v["matching"] == 100 and v["metric"] == "cosine"
    assert 0.5 < v["auc"] <= 1 and 0 <= v["eer"] < 0.5
    assert set(v["tar_at_far"]) == {"0.001", "0.01"}
    text = runner.invoke(app, ["eval", "--run", str(run_dir), "--device", "cpu", "--verify",
                               "--num-pairs", "200", "--metric", "euclidean"]).output
    assert "verification: 200 pairs (100 matching), euclidean scores" in text
    assert "ROC AUC" in text and "TAR at FAR 0.001" in text and "too few non-matching" in text
    # 100 non-matching pairs: FAR 0.01 admits one of them, which the figure then rests on
    assert "(rests on at most 1 impostor pair)" in " ".join(text.split())


def test_eval_pairs_reads_a_pairs_file(run, tmp_path):
    data, run_dir = run
    a, b, c = sorted(data.glob("class_0/*.png"))[:2] + sorted(data.glob("class_1/*.png"))[:1]
    (tmp_path / "pairs.txt").write_text(f"{a} {b} 1\n{a} {c} 0\n{b} {c} 0\n{b} {a} 1\n")
    result = runner.invoke(app, ["eval", "--run", str(run_dir), "--device", "cpu",
                                 "--pairs", str(tmp_path / "pairs.txt"), "--folds", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == 3 and report["verification"]["pairs"] == 4


@pytest.mark.parametrize("args, message", [
    (["train", "--channels", "2"], "error: --channels must be 1, 3 or 0"),
    (["train", "--dataset", "folder", "--epochs", "1"], "error: --dataset folder needs --data-dir"),
    (["train", "--dataset", "imagenet", "--epochs", "1"], "error: unknown dataset 'imagenet'; choose one of: "
                                                          "mnist, fashion-mnist, kmnist, cifar10, folder"),
    (["eval", "--verify", "--pairs", "x.txt"], "error: --verify draws pairs from the test split"),
    (["eval", "--metric", "l1"], "error: --metric must be one of: cosine, euclidean"),
    (["eval", "--images-dir", "."], "error: --images-dir is where the paths of --pairs start"),
])
def test_bad_flags_are_one_line_errors(tmp_path, args, message):
    result = runner.invoke(app, args + (["--out", str(tmp_path / "r")] if args[0] == "train" else []))
    assert result.exit_code != 0
    assert result.output.strip() == message or result.output.startswith(message)
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_broken_pairs_file_is_a_one_line_error_naming_the_line(run, tmp_path):
    (tmp_path / "pairs.txt").write_text("a b 1\nthree fields too many here\n")
    result = runner.invoke(app, ["eval", "--run", str(run[1]), "--device", "cpu",
                                 "--pairs", str(tmp_path / "pairs.txt")])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "pairs.txt:2: expected" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_embed_rgb_images_with_a_folder_model_matches_its_own_forward_pass(run, tmp_path):
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from centerloss.data.folder import decode
    from centerloss.data.types import Split
    from centerloss.device.runtime import Runtime
    from centerloss.evaluation.inference import infer
    images, run_dir = run
    files = sorted((images / "class_1").glob("*.png"))[:5]
    out = tmp_path / "e.safetensors"
    result = runner.invoke(app, ["embed", "--run", str(run_dir), "--device", "cpu", "--images",
                                 *map(str, files), "-o", str(out)])
    assert result.exit_code == 0, result.output
    got = load_file(str(out))
    ckpt = ckpt_io.load_checkpoint(run_dir / "model.safetensors")
    assert ckpt.input_shape == [3, 16, 16]
    model = build_from_checkpoint(ckpt).eval()
    pixels = torch.from_numpy(np.stack([decode(f, 16, 3) for f in files]))
    split = Split(pixels, torch.zeros(len(files), dtype=torch.long))
    features, _ = infer(model, split, ckpt.normalization["mean"], ckpt.normalization["std"],
                        Runtime(torch.device("cpu"), "fp32"))
    torch.testing.assert_close(got["features"], features)
