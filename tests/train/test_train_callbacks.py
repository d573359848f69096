"""The loop's display hooks: each batch's features reach on_features detached and on the
device, and on_evaluate comes before each epoch's evaluation is reported."""
from __future__ import annotations

import torch
from support.runs import make_data, tiny_config

from centerloss.train.loop import Callbacks, train


class Recorder(Callbacks):
    def __init__(self):
        self.events: list[tuple] = []

    def on_batch(self, epoch, batch, batches, images, window) -> None:
        self.events.append(("batch", epoch, batch))

    def on_features(self, features, labels, centers) -> None:
        self.events.append(("features", tuple(features.shape), features.requires_grad,
                            features.device.type, tuple(centers.shape), features.dtype))
        self.labels = labels

    def on_evaluate(self, epoch) -> None:
        self.events.append(("evaluate", epoch))

    def on_epoch_end(self, record) -> None:
        self.events.append(("end", record["epoch"], "test_accuracy" in record))


def test_features_each_batch_then_evaluate_then_the_epoch_record(tmp_path):
    cfg = tiny_config(make_data(tmp_path / "data"), epochs=2, feature_dim=3)   # 3 batches of 16
    recorder = Recorder()
    train(cfg, tmp_path / "run", recorder)
    features = ("features", (16, 3), False, "cpu", (10, 3), torch.float32)
    epoch = lambda e: [features, ("batch", e, 1), features, ("batch", e, 2), features, ("batch", e, 3),
                       ("evaluate", e), ("end", e, True)]
    assert recorder.events == epoch(1) + epoch(2)
    assert recorder.labels.dtype == torch.long and recorder.labels.shape == (16,)
