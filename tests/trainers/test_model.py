"""Initialization schemes, the hand-written backward pass, and the lesson's deep linear demo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers import DataCache, TrainConfig, prepare_data, train
from trainers.model import build_mlp, init_weight

CPU = torch.device("cpu")


def test_he_weights_of_a_512x512_layer_have_variance_two_over_n() -> None:
    weight = init_weight("he", 512, 512, 1.0, torch.Generator().manual_seed(0))
    assert weight.var().item() == pytest.approx(2 / 512, rel=0.05)
    assert abs(weight.mean().item()) < 0.01 * math.sqrt(2 / 512) * 10


@pytest.mark.parametrize(
    ("scheme", "variance"),
    [
        ("xavier", 1 / 512),
        ("glorot_uniform", 2 / (512 + 256)),  # U(-a, a): a^2 / 3 with a = sqrt(6 / (in + out))
        ("default", 1 / (3 * 512)),  # nn.Linear: U(-1/sqrt(in), 1/sqrt(in))
        ("fixed_normal", 0.3**2),
    ],
)
def test_other_schemes_have_their_documented_variance(scheme: str, variance: float) -> None:
    weight = init_weight(scheme, 256, 512, 0.3, torch.Generator().manual_seed(1))
    assert weight.var().item() == pytest.approx(variance, rel=0.05)


def test_scaled_identity_is_scale_times_identity_and_identity_slices_elsewhere() -> None:
    config = TrainConfig(init="scaled_identity", init_scale=1.3, hidden_units=4, hidden_layers=2)
    model = build_mlp(config, n_inputs=3, n_outputs=2, device=CPU)
    assert torch.equal(model.weights[1], 1.3 * torch.eye(4))
    assert torch.equal(model.weights[0], 1.3 * torch.eye(4, 3))
    assert torch.equal(model.weights[2], 1.3 * torch.eye(2, 4))
    assert all(torch.count_nonzero(b) == 0 for b in model.biases)


def test_biases_start_at_zero_and_seed_fixes_weights() -> None:
    config = TrainConfig(seed=3)
    a = build_mlp(config, 8, 3, CPU)
    b = build_mlp(config, 8, 3, CPU)
    c = build_mlp(config.replace(seed=4), 8, 3, CPU)
    assert torch.count_nonzero(torch.cat(a.biases)) == 0
    assert torch.equal(a.params, b.params)
    assert not torch.equal(a.params, c.params)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_hand_written_backward_matches_autograd(activation: str, task: str) -> None:
    config = TrainConfig(activation=activation, hidden_layers=3, hidden_units=7, seed=5)
    model = build_mlp(config, 6, 4 if task == "classification" else 1, CPU)
    model.params.add_(torch.randn(model.n_params, generator=torch.Generator().manual_seed(0)) * 0.1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 6, generator=g)

    # autograd on the same weights, through torch.nn.functional
    weights = [w.detach().clone().requires_grad_() for w in model.weights]
    biases = [b.detach().clone().requires_grad_() for b in model.biases]
    a = x
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        a = torch.nn.functional.linear(a, w, b)
        if i < len(weights) - 1 and activation != "linear":
            a = getattr(torch, activation)(a)
    if task == "classification":
        y = torch.randint(0, 4, (9,), generator=g)
        loss = torch.nn.functional.cross_entropy(a, y)
        out, acts = model.forward_with_activations(x)
        grad_out = (out.softmax(1) - torch.nn.functional.one_hot(y, 4)) / 9
    else:
        y = torch.randn(9, 1, generator=g)
        loss = torch.nn.functional.mse_loss(a, y)
        out, acts = model.forward_with_activations(x)
        grad_out = 2 * (out - y) / 9
    loss.backward()
    torch.testing.assert_close(out, a.detach())
    model.backward(grad_out, acts)
    for i in range(model.n_layers):
        torch.testing.assert_close(model.weight_grads[i], weights[i].grad)
        torch.testing.assert_close(model.bias_grads[i], biases[i].grad)


def deep_linear(scale: float) -> TrainConfig:
    """The lesson's demo: 30 linear layers, weights scale * I, biases 0."""
    return TrainConfig(
        dataset="wine", hidden_layers=29, hidden_units=16, activation="linear",
        init="scaled_identity", init_scale=scale, optimizer="gd", alpha=1e-3, epochs=3,
        device="cpu",
    )  # fmt: skip


@pytest.fixture(scope="module")
def wine() -> DataCache:
    return DataCache()


def test_weights_1_3_i_explode_activations_and_gradients(wine: DataCache) -> None:
    config = deep_linear(1.3)
    data = prepare_data(config, wine)
    model = build_mlp(config, data.n_features, data.n_outputs, CPU)
    norms = model.activation_norms(data.x_train)
    assert len(norms) == 30
    # Each square layer multiplies the signal by 1.3: 28 layers on it is 1.3**28 (~1500) larger
    # (norms[-1] is the 3-unit output, which keeps only 3 of the 16 channels).
    assert norms[-2] / norms[0] == pytest.approx(1.3**28, rel=1e-3)
    result = train(config, data)
    assert result.outcome == "diverged"
    assert "exploding_gradients" in result.flags
    assert result.reason is not None
    assert result.reason.startswith("gradient norm of layer ")
    assert "(> explode_threshold=10000) at epoch 1" in result.reason
    assert result.history[0]["grad_norm/0"] > config.explode_threshold


def test_weights_0_7_i_make_first_layer_gradients_vanish(wine: DataCache) -> None:
    config = deep_linear(0.7)
    data = prepare_data(config, wine)
    model = build_mlp(config, data.n_features, data.n_outputs, CPU)
    norms = model.activation_norms(data.x_train)
    assert norms[-2] / norms[0] == pytest.approx(0.7**28, rel=1e-3)
    result = train(config, data)
    assert result.outcome == "complete"
    assert "vanishing_gradients" in result.flags
    first = np.array([h["grad_norm/0"] for h in result.history])
    last = np.array([h["grad_norm/29"] for h in result.history])
    assert (first < config.vanish_ratio * last).all()


def test_he_init_with_relu_keeps_gradients_healthy(wine: DataCache) -> None:
    """The control: the same depth with He init and ReLU raises neither flag."""
    config = deep_linear(1.0).replace(init="he", activation="relu", hidden_layers=5)
    result = train(config, prepare_data(config, wine))
    assert result.outcome == "complete"
    assert result.flags == []


def test_trained_model_exports_as_a_plain_torch_module_with_the_same_outputs() -> None:
    from trainers import TrainConfig, prepare_data, train

    config = TrainConfig(dataset="wine", epochs=2, hidden_layers=2, hidden_units=16, device="cpu")
    data = prepare_data(config)
    result = train(config, data)
    module = result.model.to_module()
    assert isinstance(module, torch.nn.Sequential)
    with torch.no_grad():
        expected = result.model.forward(data.x_val)
        got = module(data.x_val)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert "model" not in result.to_dict()
