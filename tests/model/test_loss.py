import torch

from centerloss import CenterLoss


def hand_loss(x, c, y):
    m = x.shape[0]
    return sum(0.5 * float(((x[i] - c[y[i]]) ** 2).sum()) for i in range(m)) / m


def test_loss_value_and_gradient_match_the_paper():
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 2, 1, 0])
    loss_fn = CenterLoss(num_classes=4, feature_dim=3).double().eval()
    loss_fn.centers.copy_(torch.randn(4, 3, dtype=torch.float64))
    c = loss_fn.centers.clone()
    lam = 0.1
    loss = loss_fn(x, y)
    assert abs(loss.item() - hand_loss(x.detach(), c, y)) < 1e-12
    (lam * loss).backward()
    expected = lam * (x.detach() - c[y]) / x.shape[0]     # lambda * (x_i - c_{y_i}) / m
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-14)


def test_loss_is_averaged_so_lambda_does_not_depend_on_batch_size():
    loss_fn = CenterLoss(2, 2).eval()
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 1])
    single = loss_fn(x, y)
    doubled = loss_fn(torch.cat([x, x]), torch.cat([y, y]))
    assert torch.isclose(single, doubled)
    assert abs(single.item() - 0.5 * (1 + 4) / 2) < 1e-6


def test_center_update_is_eq4_and_leaves_absent_classes_alone():
    loss_fn = CenterLoss(num_classes=3, feature_dim=2, alpha=0.5)
    loss_fn.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, -5.0]]))
    x = torch.tensor([[2.0, 0.0], [4.0, 2.0], [1.0, 3.0]])
    y = torch.tensor([0, 0, 1])                       # class 2 is absent from the batch
    loss_fn.train()
    loss_fn(x, y)
    # class 0: n=2, delta = ((0-2)+(0-4), (0-0)+(0-2)) / 3 = (-2, -2/3); c <- c - 0.5 * delta
    # class 1: n=1, delta = ((1-1), (1-3)) / 2 = (0, -1); c <- (1, 1.5)
    expected = torch.tensor([[1.0, 1.0 / 3.0], [1.0, 1.5], [5.0, -5.0]])
    torch.testing.assert_close(loss_fn.centers, expected)


def test_loss_uses_the_centers_from_before_the_update():
    loss_fn = CenterLoss(1, 1, alpha=1.0)
    x = torch.tensor([[2.0]])
    loss = loss_fn.train()(x, torch.tensor([0]))
    assert loss.item() == 0.5 * 4.0                   # centers were 0 when the loss was taken
    assert loss_fn.centers.item() == 1.0              # then moved by 2 / (1 + 1)


def test_eval_mode_does_not_move_centers():
    loss_fn = CenterLoss(2, 2).eval()
    loss_fn(torch.ones(4, 2), torch.tensor([0, 1, 0, 1]))
    assert loss_fn.centers.abs().sum() == 0


def test_center_update_stays_fp32_under_bf16_features():
    loss_fn = CenterLoss(2, 2, alpha=1.0)
    x = torch.tensor([[1.001, 2.0], [3.0, 4.0]], dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_fn.train()(x, torch.tensor([0, 0]))
    assert loss_fn.centers.dtype == torch.float32
    expected = (x.float().sum(0) / 3).unsqueeze(0)
    torch.testing.assert_close(loss_fn.centers[:1], expected)


def test_centers_are_not_parameters():
    loss_fn = CenterLoss(10, 2)
    assert list(loss_fn.parameters()) == []
    assert "centers" in loss_fn.state_dict()
