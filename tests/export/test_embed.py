"""cl embed: the numbers match a direct forward pass, in all three file formats, for splits and images."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from centerloss.data import batches as batch_mod, idx as idx_mod
from centerloss.export.embed import (
    EmbedError,
    csv_text,
    embed_images,
    embed_split,
    read_image,
    write_embedding,
)
from centerloss.model.build import build_from_checkpoint
from centerloss.store import checkpoint as ckpt_io
from cli.main import app

runner = CliRunner()


def cl(*args):
    return runner.invoke(app, [str(a) for a in args])


def forward(checkpoint, images_u8: torch.Tensor):
    """Features and logits by hand: the model of the checkpoint on normalised uint8 images."""
    ckpt = ckpt_io.load_checkpoint(checkpoint)
    model = build_from_checkpoint(ckpt).eval()
    spec = idx_mod.DATASETS[ckpt.config.dataset]
    with torch.no_grad():
        return model(batch_mod.normalize(images_u8, spec.mean, spec.std))


@pytest.fixture(scope="module")
def checkpoint(runs):
    return runs["wide"] / "model.safetensors"


@pytest.fixture(scope="module")
def test_emb(checkpoint):
    return embed_split(checkpoint, "test", device="cpu")


def test_split_matches_a_direct_forward_pass(checkpoint, test_emb, idx_root):
    ds = idx_mod.load("mnist", idx_root, "cpu", download=False)
    features, logits = forward(checkpoint, ds.test.images)
    torch.testing.assert_close(test_emb.features, features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(test_emb.logits, logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(test_emb.predicted, logits.argmax(1))
    assert torch.equal(test_emb.labels, ds.test.labels)
    centers = ckpt_io.load_checkpoint(checkpoint).centers
    distances = ((features[:, None, :] - centers[None]) ** 2).sum(-1).sqrt()
    assert torch.equal(test_emb.nearest_center, distances.argmin(1))
    torch.testing.assert_close(test_emb.center_distance, distances.min(1).values, atol=1e-5, rtol=1e-5)
    assert test_emb.features.shape == (200, 4) and test_emb.logits.shape == (200, 10)


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    d = sum(1 for k in rows[0] if k.startswith("f"))
    c = sum(1 for k in rows[0] if k.startswith("logit"))
    col = lambda name, kind=float: np.array([kind(r[name]) for r in rows])  # noqa: E731
    return rows, {
        "features": np.stack([col(f"f{j}") for j in range(d)], 1).astype(np.float32),
        "logits": np.stack([col(f"logit{j}") for j in range(c)], 1).astype(np.float32),
        "predicted": col("predicted", int), "nearest_center": col("nearest_center", int),
        "center_distance": col("center_distance").astype(np.float32),
    }


def test_the_three_formats_hold_the_same_numbers(test_emb, tmp_path):
    expected = {k: getattr(test_emb, k).numpy() for k in
                ("features", "logits", "predicted", "nearest_center", "center_distance")}
    st = load_file(write_embedding(test_emb, tmp_path / "e.safetensors"))
    npy = np.load(write_embedding(test_emb, tmp_path / "e.npy"), allow_pickle=False)
    rows, from_csv = read_csv(write_embedding(test_emb, tmp_path / "e.csv"))
    for key, want in expected.items():
        np.testing.assert_array_equal(st[key].numpy(), want)
        np.testing.assert_array_equal(npy[key], want)
        np.testing.assert_array_equal(from_csv[key], want)     # 9 digits give float32 back exactly
    labels = test_emb.labels.numpy()
    np.testing.assert_array_equal(st["labels"].numpy(), labels)
    np.testing.assert_array_equal(npy["label"], labels)
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert rows[0]["label_name"] == str(labels[0]) and rows[0]["index"] == "0"
    assert npy.dtype.hasobject is False
    meta = ckpt_io.read_tensors(tmp_path / "e.safetensors")[1]
    assert meta["format"] == "cl-embedding/1" and meta["split"] == "test"
    assert json.loads(meta["classes"]) == [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def image_folder(idx_root, tmp_path_factory):
    """The first five test images as 28x28 PNGs (one in a subfolder), a 56x56 RGB JPEG and a
    stray text file that a folder walk must skip."""
    ds = idx_mod.load("mnist", idx_root, "cpu", download=False)
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    for i in range(5):
        Image.fromarray(ds.test.images[i].numpy()).save(root / ("sub" if i == 4 else ".") / f"{i}.png")
    big = np.repeat(np.repeat(ds.test.images[0].numpy(), 2, 0), 2, 1)
    Image.fromarray(np.stack([big] * 3, -1)).save(root / "z_big.jpg")
    (root / "readme.txt").write_text("not an image")
    return root, ds.test.images[:5]


def test_image_folder_matches_a_direct_forward_pass(checkpoint, image_folder, tmp_path):
    root, originals = image_folder
    emb = embed_images(checkpoint, [root], device="cpu")
    assert [p.rsplit("/", 2)[-1] for p in emb.sources] == ["0.png", "1.png", "2.png", "3.png", "4.png",
                                                           "z_big.jpg"]
    features, logits = forward(checkpoint, originals)
    torch.testing.assert_close(emb.features[:5], features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb.logits[:5], logits, atol=1e-5, rtol=1e-5)
    assert emb.labels is None and emb.features.shape == (6, 4)
    npy = np.load(write_embedding(emb, tmp_path / "i.npy"))
    assert "label" not in npy.dtype.names and npy["path"][5] == emb.sources[5]
    rows, _ = read_csv(write_embedding(emb, tmp_path / "i.csv"))
    assert "label" not in rows[0] and rows[5]["path"] == emb.sources[5]


def test_images_are_resized_to_the_input_and_can_be_inverted(image_folder):
    root, originals = image_folder
    big = read_image(root / "z_big.jpg", 28, 28)
    assert big.shape == (28, 28) and big.dtype == np.uint8
    assert np.abs(big.astype(int) - originals[0].numpy()).mean() < 20   # the same picture, resized
    small = read_image(root / "0.png", 28, 28, invert=True)
    np.testing.assert_array_equal(small, 255 - originals[0].numpy())


def test_a_file_that_is_not_an_image_is_one_line_error(checkpoint, image_folder, tmp_path):
    root, _ = image_folder
    with pytest.raises(EmbedError, match=r"readme.txt: not an image that can be read"):
        embed_images(checkpoint, [root / "readme.txt"], device="cpu")
    out = tmp_path / "e.csv"
    result = cl("embed", "--checkpoint", checkpoint, "--images", root / "0.png", root / "readme.txt", "-o", out)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {root / 'readme.txt'}: not an image")
    assert result.stderr.count("\n") == 1 and not out.exists()


def test_cli_embeds_the_test_split_and_says_where(checkpoint, tmp_path):
    out = tmp_path / "t.csv"
    result = cl("embed", "--checkpoint", checkpoint, "--device", "cpu", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}: 4-D features of the test split (200 images)")
    assert len(out.read_text().splitlines()) == 201


def test_cli_keeps_an_existing_file_unless_told(checkpoint, tmp_path):
    out = tmp_path / "t.npy"
    out.write_bytes(b"precious")
    result = cl("embed", "--checkpoint", checkpoint, "-o", out)
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert out.read_bytes() == b"precious"
    result = cl("embed", "--checkpoint", checkpoint, "-o", out, "--overwrite", "--split", "train")
    assert result.exit_code == 0, result.output
    assert np.load(out)["features"].shape == (200, 4)


@pytest.mark.parametrize("args,message", [
    (["-o", "x.json"], "name it *.safetensors, *.npy or *.csv"),
    (["-o", "x.csv", "--epoch", "9"], "has no epoch 9; epochs present: 1, 2"),
    (["-o", "x.csv", "--split", "val"], "--split must be train or test, got 'val'"),
    (["-o", "x.csv", "--images"], "--images needs at least one"),
    (["-o", "x.csv", "--images", "--split", "test", "a.png"], "exclude each other"),
    (["-o", "x.csv", "a.png"], "need --images"),
    (["-o", "x.csv", "--images", "nowhere.png"], "nowhere.png: no such file or folder"),
])
def test_cli_bad_requests_fail_in_one_line(runs, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cl("embed", "--run", runs["wide"], *args)
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.json").exists()


def test_csv_names_are_not_spreadsheet_formulas(checkpoint, image_folder, tmp_path, monkeypatch):
    root, _ = image_folder
    monkeypatch.chdir(tmp_path)
    Image.open(root / "0.png").save(tmp_path / "@cmd.png")
    emb = embed_images(checkpoint, ["@cmd.png"], device="cpu")      # a relative path: "@cmd.png"
    emb.classes = ["-1+1", *emb.classes[1:]]
    rows, _ = read_csv(write_embedding(emb, tmp_path / "f.csv"))
    assert rows[0]["path"] == "'@cmd.png"
    assert csv_text("=1+1") == "'=1+1" and csv_text("+x") == "'+x" and csv_text("cat") == "cat"
    if rows[0]["predicted"] == "0":
        assert rows[0]["predicted_name"] == "'-1+1"


def test_a_pdf_beside_the_images_is_passed_over(checkpoint, image_folder, tmp_path):
    root, _ = image_folder
    mixed = tmp_path / "mixed"
    shutil.copytree(root, mixed)
    (mixed / "scan.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    emb = embed_images(checkpoint, [mixed], device="cpu")
    assert len(emb.sources) == 6 and not any(s.endswith(".pdf") for s in emb.sources)


@pytest.mark.parametrize("flags, limit, kept", [([], 1000, True), ([], 9, False),
                                                (["--logits"], 9, True), (["--no-logits"], 1000, False)])
def test_logits_are_written_up_to_a_number_of_classes_unless_asked(checkpoint, tmp_path, monkeypatch,
                                                                    flags, limit, kept):
    from centerloss.export import embed as embed_mod
    monkeypatch.setattr(embed_mod, "LOGITS_UP_TO_CLASSES", limit)      # the model has 10 classes
    files = {suffix: tmp_path / f"e{suffix}" for suffix in (".safetensors", ".npy", ".csv")}
    for out in files.values():
        result = cl("embed", "--checkpoint", checkpoint, "--device", "cpu", "-o", out, *flags)
        assert result.exit_code == 0, result.output
        left_out = ("left out the logits: 10 classes (more than 9) would take 0 MB; --logits "
                    "writes them")
        assert (left_out in result.stdout) == (not kept and not flags), result.stdout
    tensors = load_file(files[".safetensors"])
    assert ("logits" in tensors) == kept and tensors["features"].shape == (200, 4)
    table = np.load(files[".npy"])
    assert ("logits" in table.dtype.names) == kept
    with open(files[".csv"], newline="") as f:
        header = next(csv.reader(f))
    assert ("logit0" in header) == kept and header[-1] == ("logit9" if kept else "f3")
    # the predictions are the same either way: each batch's argmax
    reference = embed_split(checkpoint, "test", device="cpu", logits=True)
    assert torch.equal(tensors["predicted"], reference.predicted)
    assert torch.equal(torch.from_numpy(table["predicted"].copy()), reference.predicted)


def test_the_help_states_the_logits_limit():
    from centerloss.export.embed import LOGITS_UP_TO_CLASSES
    result = cl("embed", "--help")
    assert f"written up to {LOGITS_UP_TO_CLASSES:,} classes" in " ".join(result.stdout.split())
