"""Pairs files (plain and LFW's) and `evaluate_pairs` through a trained checkpoint."""
import numpy as np
import pytest
import torch
from PIL import Image
from support.data import train_folder_run, write_png_gray

from centerloss.data.folder import decode_all
from centerloss.data.registry import open_dataset
from centerloss.data.types import Split
from centerloss.device.runtime import Runtime
from centerloss.errors import CheckpointError, DataError
from centerloss.evaluation.inference import infer
from centerloss.evaluation.pairs import evaluate_pairs, normalization_of, read_pairs
from centerloss.evaluation.verification import pair_scores, verify_scores
from centerloss.model.build import build_from_checkpoint
from centerloss.store import checkpoint as ckpt_io


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_folder_run(tmp_path_factory.mktemp("pairs"))


def test_plain_pairs_in_every_separator_with_a_header(tmp_path):
    for name in ("a.png", "b.png", "c d.png"):
        write_png_gray(tmp_path / name, 10)
    (tmp_path / "pairs.csv").write_text("path_a,path_b,same\na.png,b.png,1\n# note\n\n"
                                        "b.png,c d.png,different\n")
    (tmp_path / "pairs.tsv").write_text("a.png\tc d.png\tTrue\n")
    (tmp_path / "pairs.txt").write_text(f"a.png {tmp_path / 'b.png'} no\n")
    p = read_pairs(tmp_path / "pairs.csv")
    assert p.paths_a == [tmp_path / "a.png", tmp_path / "b.png"]
    assert p.paths_b == [tmp_path / "b.png", tmp_path / "c d.png"]
    assert p.same.tolist() == [True, False]
    assert read_pairs(tmp_path / "pairs.tsv").same.tolist() == [True]
    q = read_pairs(tmp_path / "pairs.txt")
    assert q.paths_b == [tmp_path / "b.png"] and q.same.tolist() == [False]   # absolute paths stay


def test_lfw_format_and_its_image_folder(tmp_path):
    images = tmp_path / "lfw_funneled"
    for name, n in (("Ann_Lee", 2), ("Bo_Wu", 1)):
        (images / name).mkdir(parents=True)
        for i in range(1, n + 1):
            write_png_gray(images / name / f"{name}_{i:04d}.jpg", 30 * i)
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo_Wu\t1\n")
    p = read_pairs(tmp_path / "pairs.txt")
    assert p.paths_a == [images / "Ann_Lee" / "Ann_Lee_0001.jpg", images / "Ann_Lee" / "Ann_Lee_0002.jpg"]
    assert p.paths_b == [images / "Ann_Lee" / "Ann_Lee_0002.jpg", images / "Bo_Wu" / "Bo_Wu_0001.jpg"]
    assert p.same.tolist() == [True, False]


@pytest.mark.parametrize("text, message", [
    ("", "no pairs"),
    ("a.png b.png maybe\n", ":1: expected 'path_a path_b same'"),
    ("a.png b.png 1\na.png\n", ":2: expected"),
    ("2 1\nAnn 1\n", ":2: expected 'name n1 n2'"),
    ("a.png nothere.png 1\n", r"1 image\(s\) not found, first .*nothere.png"),
])
def test_bad_pairs_files_are_one_line_errors(tmp_path, text, message):
    write_png_gray(tmp_path / "a.png", 1)
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_pairs(tmp_path / "pairs.txt")
    assert "\n" not in str(err.value)


def test_pairs_through_the_checkpoint_score_like_its_features(run, tmp_path):
    data, run_dir = run
    ds = open_dataset("folder", data, image_size=16, workers=0)
    files = sorted(data.glob("class_*/*.png"))[::4]           # 20 images, 5 of each class
    lines = [f"{a} {b} {int(a.parent == b.parent)}" for a in files for b in files if a < b]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    report, result = evaluate_pairs(run_dir / "model.safetensors", tmp_path / "pairs.txt",
                                    metric="euclidean", folds=5, device="cpu", workers=0)
    assert report["images"] == 20 and report["verification"]["pairs"] == 190
    # the same images decoded as the folder data set, through the same model, scored by hand
    ckpt = ckpt_io.load_checkpoint(run_dir / "model.safetensors")
    model = build_from_checkpoint(ckpt)
    split = Split(decode_all([str(f) for f in files], 16, 3, 0), torch.zeros(20, dtype=torch.int64))
    features, _ = infer(model, split, ds.mean, ds.std, Runtime(torch.device("cpu"), "fp32"))
    index = {f: i for i, f in enumerate(files)}
    a = torch.tensor([index[f] for f in files for g in files if f < g])
    b = torch.tensor([index[g] for f in files for g in files if f < g])
    same = torch.tensor([f.parent == g.parent for f in files for g in files if f < g])
    expected = verify_scores(pair_scores(features[a], features[b], "euclidean"), same, 5).summary
    for key in ("auc", "eer", "accuracy"):
        assert report["verification"][key] == pytest.approx(expected[key], abs=1e-6)
    assert report["verification"]["auc"] > 0.8                # 3 epochs on easy classes
    assert result.fpr[-1] == 1.0 and result.tpr[-1] == 1.0


def test_old_checkpoints_fall_back_to_the_data_sets_statistics(run):
    ckpt = ckpt_io.load_checkpoint(run[1] / "model.safetensors")
    assert normalization_of(ckpt) == (ckpt.normalization["mean"], ckpt.normalization["std"])
    ckpt.normalization = {}
    ckpt.config.dataset = "fashion-mnist"
    assert normalization_of(ckpt) == ([0.2860], [0.3530])
    ckpt.config.dataset = "folder"
    with pytest.raises(CheckpointError, match="stores no input normalisation"):
        normalization_of(ckpt)


def test_bad_normalization_metadata_is_refused(run, tmp_path):
    tensors, meta = ckpt_io.read_tensors(run[1] / "model.safetensors")
    meta["normalization"] = '{"mean": [0.5], "std": [0.5]}'        # one channel for RGB input
    ckpt_io.save_tensors(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="'normalization' must hold 3 means"):
        ckpt_io.load_checkpoint(tmp_path / "bad.safetensors")


def test_a_pairs_file_is_streamed_and_bounded(tmp_path, monkeypatch):
    """Millions of lines are read one at a time: a bad line is named without reading the rest,
    pairs of few images cost indices, not paths, and the count has a stated bound."""
    from centerloss.evaluation import pairs as pairs_mod
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    big = tmp_path / "big.txt"
    with open(big, "w") as f:
        f.write("a.png b.png 1\nnot a pair\n")
        f.write("a.png b.png 0\n" * 1_000_000)
    with pytest.raises(DataError, match=r"big.txt:2: expected"):
        read_pairs(big)
    good = tmp_path / "good.txt"
    good.write_text("a.png b.png 1\nb.png a.png 0\n" * 50_000)
    p = read_pairs(good)
    assert len(p) == 100_000 and p.images == [tmp_path / "a.png", tmp_path / "b.png"]
    assert p.a.dtype == torch.int32 and p.same.sum() == 50_000
    monkeypatch.setattr(pairs_mod, "MAX_PAIRS", 1000)
    with pytest.raises(DataError, match="more than 1,000 pairs"):
        read_pairs(good)
