"""The margin heads against hand computations, their settings, and old checkpoints."""
import math

import pytest
import torch

from centerloss.config.config import Config
from centerloss.config.heads import check_head
from centerloss.model.heads import AngularHead, training_loss
from centerloss.model.nets import build_model
from centerloss.store import checkpoint as ckpt_io
from centerloss.train.loop import train


def head_at(angles_deg: list[float], head: str, margin: float, scale: float) -> AngularHead:
    """A 2-D head whose class weights point at the given angles (and have norms other than 1)."""
    h = AngularHead(2, len(angles_deg), head, margin, scale)
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    with torch.no_grad():
        h.weight.copy_(torch.stack([a.cos(), a.sin()], 1) * torch.arange(2, 2 + len(a))[:, None])
    return h


def feature_at(deg: float, norm: float = 3.0) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[norm * math.cos(a), norm * math.sin(a)]])


def trained_logits(h: AngularHead, x: torch.Tensor, label: int) -> torch.Tensor:
    return h.training_logits(h(x), torch.tensor([label]))[0]


def test_forward_is_scale_times_cosine_with_no_margin():
    h = head_at([0, 90, 180], "cosface", 0.35, 30.0)
    z = h(feature_at(60))[0]
    expected = 30 * torch.tensor([math.cos(math.radians(60)), math.cos(math.radians(30)),
                                  math.cos(math.radians(120))])
    assert torch.allclose(z, expected.float(), atol=1e-5)


def test_cosface_subtracts_the_margin_from_the_target_only():
    h = head_at([0, 90, 180], "cosface", 0.35, 30.0)
    z = trained_logits(h, feature_at(60), label=1)
    c = [math.cos(math.radians(d)) for d in (60, 30, 120)]
    assert torch.allclose(z, torch.tensor([30 * c[0], 30 * (c[1] - 0.35), 30 * c[2]]), atol=1e-4)


def test_arcface_adds_the_margin_to_the_target_angle_only():
    h = head_at([0, 90, 180], "arcface", 0.5, 64.0)
    z = trained_logits(h, feature_at(60), label=0)
    expected = [64 * math.cos(math.radians(60) + 0.5), 64 * math.cos(math.radians(30)),
                64 * math.cos(math.radians(120))]
    assert torch.allclose(z, torch.tensor(expected), atol=1e-3)


def test_arcface_past_pi_minus_m_falls_back_to_cos_minus_m_sin_m():
    h = head_at([0, 90, 180], "arcface", 0.5, 64.0)
    # the feature at 160 degrees is 160 degrees from class 0: theta + m = 2.79 + 0.5 > pi
    z = trained_logits(h, feature_at(160), label=0)
    theta = math.radians(160)
    fallback = math.cos(theta) - 0.5 * math.sin(0.5)
    assert abs(z[0].item() - 64 * fallback) < 1e-3
    assert abs(z[0].item() - 64 * math.cos(theta + 0.5)) > 1     # not the rising cos(theta + m)
    assert abs(z[2].item() - 64 * math.cos(math.radians(20))) < 1e-3
    # with the fallback the target's cosine falls all the way from theta = 0 to pi
    cos = torch.cos(torch.linspace(0, math.pi, 2001, dtype=torch.float64)).float()
    target = h.target_cosine(cos)
    assert (target[1:] <= target[:-1] + 1e-6).all()


def test_sphereface_psi_with_the_annealed_lambda():
    h = head_at([0, 90, 180], "sphereface", 4, 10.0)
    theta = math.radians(50)        # 4 * theta = 200 degrees: k = 1, psi = -cos(4 theta) - 2
    psi = -math.cos(4 * theta) - 2
    lam = 1000.0                    # step 0 of the annealing
    z = trained_logits(h, feature_at(50), label=0)
    assert abs(z[0].item() - 10 * (lam * math.cos(theta) + psi) / (1 + lam)) < 1e-3
    assert abs(z[1].item() - 10 * math.cos(math.radians(40))) < 1e-4
    h.training_loss(h(feature_at(50)), torch.tensor([0]))
    assert int(h.step) == 1         # training_loss counts the steps of the annealing
    h.step.fill_(10_000)            # lambda has reached its floor of 5
    z = trained_logits(h, feature_at(50), label=0)
    assert abs(z[0].item() - 10 * (5 * math.cos(theta) + psi) / 6) < 1e-3


def test_margins_raise_the_loss_of_the_same_logits():
    x = torch.randn(16, 2)
    y = torch.randint(0, 3, (16,))
    for head, margin in (("cosface", 0.35), ("arcface", 0.5), ("sphereface", 4)):
        plain = head_at([0, 120, 240], head, 0.0 if head != "sphereface" else 1, 16.0)
        margined = head_at([0, 120, 240], head, margin, 16.0)
        if head == "sphereface":
            margined.step.fill_(10_000)
        assert margined.training_loss(margined(x), y) > plain.training_loss(plain(x), y)


def test_gradient_reaches_features_and_weights_through_the_margin():
    model = build_model("seed", 10, 2, 1, 28, "arcface", 0.5, 64.0)
    x = torch.randn(4, 1, 28, 28)
    f, z = model(x)
    training_loss(model)(z, torch.tensor([0, 1, 2, 3])).backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.feature[0].weight.grad.abs().sum() > 0


def test_settings_are_checked_with_the_fix_in_one_line():
    check_head("arcface", 0.5, 64.0)
    for head, margin, scale, words in (("cosface", 1.5, 64.0, "--margin"), ("arcface", 0.5, 0.5, "--scale"),
                                       ("sphereface", 2.5, 64.0, "integer"), ("softmax", 0.3, None, "--head"),
                                       ("norm", None, None, "unknown head")):
        with pytest.raises(ValueError, match=words):
            check_head(head, margin, scale)
    with pytest.raises(ValueError, match="--margin"):
        Config(head="cosface", margin=-0.1).validate()


def test_config_fills_the_papers_defaults_and_old_configs_load_as_softmax():
    wide = dict(feature_dim=128)
    assert (Config(head="cosface", **wide).margin, Config(head="cosface", **wide).scale) == (0.35, 64.0)
    assert Config(head="arcface", **wide).margin == 0.5 and Config(head="sphereface", **wide).margin == 4
    assert Config().margin is None and Config().scale is None
    old = Config().to_json().replace('"head": "softmax", ', "")
    for key in ('"margin": null, ', '"scale": null, '):
        old = old.replace(key, "")
    assert "head" not in old and "margin" not in old
    assert Config.from_json(old).head == "softmax"
    assert Config.from_json(Config(head="arcface", scale=30.0).to_json()).scale == 30.0


def test_two_dimensional_features_get_margins_they_can_meet():
    """The papers' CosFace m 0.35 cannot be met by ten classes 36° apart (it needs m < 0.19): in 2-D
    the defaults are the ones measured there; a margin or scale the user gives is kept."""
    assert (Config(head="cosface").margin, Config(head="cosface").scale) == (0.1, 16.0)
    assert (Config(head="arcface").margin, Config(head="arcface").scale) == (0.2, 16.0)
    assert (Config(head="sphereface").margin, Config(head="sphereface").scale) == (4.0, 64.0)
    assert Config(head="cosface").margin < 1 - math.cos(math.radians(36))
    assert (Config(head="cosface", margin=0.35).margin, Config(head="cosface", scale=64.0).scale) == (0.35, 64.0)
    assert Config(head="cosface", feature_dim=3).margin == 0.35
    # a 2-D checkpoint saved under the papers' defaults states them, so it loads as it trained
    saved = Config(head="cosface", margin=0.35, scale=64.0).to_json()
    assert (Config.from_json(saved).margin, Config.from_json(saved).scale) == (0.35, 64.0)
    # --help states the rule from the same table
    from centerloss.config.options import OPTIONS
    assert "cosface 0.35, arcface 0.5; with features of 2 dimensions or fewer" in OPTIONS["--margin"].help
    assert OPTIONS["--margin"].help.endswith(": cosface 0.1, arcface 0.2].")
    assert OPTIONS["--scale"].help.endswith(": cosface 16, arcface 16].")


@pytest.mark.parametrize("head", ["sphereface", "cosface", "arcface"])
def test_a_short_run_of_each_margin_head_learns(easy_data, tmp_path, head):
    cfg = Config(model="seed", epochs=4, batch_size=50, lr=0.1, data_dir=str(easy_data), lam=0.0,
                 head=head, scale=16.0, feature_dim=8, augment=0, snapshot_train=0, device="cpu",
                 precision="fp32")
    records = train(cfg, tmp_path / head)
    accuracy = [r["test_accuracy"] for r in records]
    # from chance (10 classes) to far above it, and never falling back
    assert accuracy[-1] >= accuracy[0] and accuracy[-1] > 0.5, accuracy
    assert records[-1]["train_ce"] < records[0]["train_ce"]
    ckpt = ckpt_io.load_checkpoint(tmp_path / head / "model.safetensors")
    assert (ckpt.config.head, ckpt.config.margin) == (head, Config(head=head, feature_dim=8).margin)
