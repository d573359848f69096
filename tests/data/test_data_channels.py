"""Batches of 1- and 3-channel images: normalisation, translation, and the DDP shards."""
import torch

from centerloss.data import batches as batch_mod
from centerloss.data.types import Split


def rgb_split(n=10, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)
    return Split(images, torch.arange(n) % 3)


def test_normalize_rgb_is_per_channel_and_channels_last():
    images = rgb_split().images
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.25, 0.5)
    out = batch_mod.normalize(images, mean, std)
    assert out.shape == (10, 3, 6, 5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    for c in range(3):
        expected = (images[..., c].float() - mean[c] * 255) / (std[c] * 255)
        torch.testing.assert_close(out[:, c], expected)


def test_normalize_gray_keeps_the_scalar_path():
    images = torch.randint(0, 256, (4, 7, 7), dtype=torch.uint8)
    expected = (images.float().unsqueeze(1) - 0.1307 * 255) / (0.3081 * 255)
    torch.testing.assert_close(batch_mod.normalize(images, 0.1307, 0.3081), expected)
    # a checkpoint stores one-element lists for a grayscale set: same result
    torch.testing.assert_close(batch_mod.normalize(images, [0.1307], [0.3081]), expected)


def test_translate_rgb_moves_every_channel_like_a_gray_image():
    images = rgb_split(n=4, h=7, w=7).images
    shifts = torch.tensor([[1, -2], [0, 0], [-2, 2], [2, 1]])
    moved = batch_mod.translate(images, shifts, 2)
    assert moved.shape == images.shape
    for c in range(3):
        torch.testing.assert_close(moved[..., c], batch_mod.translate(images[..., c].contiguous(), shifts, 2))
    # image 0 moved down 1 and left 2: its pixel (3, 3) came from (2, 5)
    assert torch.equal(moved[0, 3, 3], images[0, 2, 5])
    assert torch.equal(moved[0, 0], torch.zeros_like(moved[0, 0]))   # the row shifted in is zeros


def test_shards_of_two_ranks_make_up_the_single_process_batches():
    split = rgb_split(n=23)
    kw = dict(batch_size=8, seed=3, epoch=2, augment=1, mean=(0.5,) * 3, std=(0.25,) * 3)
    single = list(batch_mod.train_batches(split, **kw))
    ranks = [list(batch_mod.train_batches(split, rank=r, world=2, **kw)) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 3
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks):
        # rank r holds images r, r + 2, r + 4, ... of the batch
        torch.testing.assert_close(x[0::2], x0)
        torch.testing.assert_close(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)


def test_a_last_batch_too_small_for_batchnorm_is_dropped():
    assert batch_mod.batches_per_epoch(60000, 128) == 469          # 96 left over: kept
    assert batch_mod.batches_per_epoch(17, 8) == 2                 # 1 left over: dropped
    assert batch_mod.batches_per_epoch(19, 8, world=2) == 2        # 3 for 2 ranks: dropped
    assert batch_mod.batches_per_epoch(20, 8, world=2) == 3        # 4 for 2 ranks: kept
    shards = batch_mod.batch_slices(20, 8, rank=1, world=2)
    assert [list(range(20))[s] for s in shards] == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19]]
