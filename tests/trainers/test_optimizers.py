"""Each optimizer follows the lesson's update equations, checked against NumPy over 5 steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers import TrainConfig
from trainers.optimizers import LessonOptimizer

RNG = np.random.default_rng(7)
A = RNG.normal(size=(12, 5))
B = RNG.normal(size=12)
W0 = RNG.normal(size=5)


def gradient(w: np.ndarray) -> np.ndarray:
    """Gradient of the least-squares loss 0.5 * |A w - b|^2 / n: a small real problem."""
    return A.T @ (A @ w - B) / len(B)


def lesson_steps(config: TrainConfig, steps: int) -> list[np.ndarray]:
    """The lesson's equations, written out in NumPy (float64)."""
    w = W0.copy()
    v = np.zeros_like(w)
    s = np.zeros_like(w)
    alpha, eps = config.alpha, config.epsilon
    trajectory = []
    for t in range(1, steps + 1):
        dw = gradient(w)
        if config.optimizer == "gd":
            w = w - alpha * dw
        elif config.optimizer == "momentum":
            v = config.beta * v + (1 - config.beta) * dw
            w = w - alpha * v
        elif config.optimizer == "rmsprop":
            s = config.beta * s + (1 - config.beta) * dw**2
            w = w - alpha * dw / (np.sqrt(s) + eps)
        elif config.optimizer == "adam":
            v = config.beta1 * v + (1 - config.beta1) * dw
            s = config.beta2 * s + (1 - config.beta2) * dw**2
            v_corr = v / (1 - config.beta1**t)
            s_corr = s / (1 - config.beta2**t)
            w = w - alpha * v_corr / np.sqrt(s_corr + eps)  # epsilon inside the sqrt
        trajectory.append(w.copy())
    return trajectory


def our_steps(config: TrainConfig, steps: int, dtype: torch.dtype) -> list[np.ndarray]:
    params = torch.tensor(W0, dtype=dtype)
    grads = torch.zeros_like(params)
    optimizer = LessonOptimizer(config, params, grads)
    trajectory = []
    for _ in range(steps):
        grads.copy_(torch.tensor(gradient(params.double().numpy()), dtype=dtype))
        optimizer.step()
        trajectory.append(params.double().numpy().copy())
    return trajectory


CONFIGS = [
    TrainConfig(optimizer="gd", alpha=0.1),
    TrainConfig(optimizer="momentum", alpha=0.1),
    TrainConfig(optimizer="momentum", alpha=0.05, beta=0.5),
    TrainConfig(optimizer="rmsprop", alpha=0.01),
    TrainConfig(optimizer="rmsprop", alpha=0.01, beta=0.99, epsilon=1e-3),
    TrainConfig(optimizer="adam", alpha=0.01),
    TrainConfig(optimizer="adam", alpha=0.02, beta1=0.8, beta2=0.99, epsilon=1e-2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.optimizer}-{c.alpha}-{c.beta}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_updates_match_the_lessons_equations_over_five_steps(
    config: TrainConfig, dtype: torch.dtype
) -> None:
    expected = lesson_steps(config, 5)
    ours = our_steps(config, 5, dtype)
    for step, (want, got) in enumerate(zip(expected, ours, strict=True), start=1):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"step {step}")
    # The problem is not trivial: every optimizer really moved the weights.
    assert np.abs(ours[-1] - W0).max() > 1e-3


def test_momentum_differs_from_torch_sgd_momentum_which_has_no_one_minus_beta() -> None:
    """torch.optim.SGD(momentum=beta) computes V = beta V + dW; the lesson's V is an average."""
    config = TrainConfig(optimizer="momentum", alpha=0.1, beta=0.9)
    ours = our_steps(config, 3, torch.float64)[-1]
    w = torch.tensor(W0, requires_grad=True)
    sgd = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    for _ in range(3):
        w.grad = torch.tensor(gradient(w.detach().numpy()))
        sgd.step()
    assert np.abs(ours - w.detach().numpy()).max() > 1e-3


@pytest.mark.parametrize(("epsilon", "agrees"), [(1e-8, True), (1e-2, False)])
def test_adam_matches_torch_adam_except_for_where_epsilon_sits(
    epsilon: float, agrees: bool
) -> None:
    """The one documented difference: the lesson's Adam divides by sqrt(S_corr + eps),
    torch.optim.Adam by sqrt(S_corr) + eps. With gradients ~0.1-1 and eps = 1e-8 both give the
    same steps to 1e-6; with a large eps they visibly differ."""
    config = TrainConfig(optimizer="adam", alpha=0.01, epsilon=epsilon)
    ours = our_steps(config, 5, torch.float64)[-1]
    w = torch.tensor(W0, requires_grad=True)
    adam = torch.optim.Adam([w], lr=0.01, eps=epsilon)
    for _ in range(5):
        w.grad = torch.tensor(gradient(w.detach().numpy()))
        adam.step()
    gap = np.abs(ours - w.detach().numpy()).max()
    assert bool(gap < 1e-6) == agrees, gap


def test_learning_rate_is_read_from_param_groups_at_each_step() -> None:
    config = TrainConfig(optimizer="gd", alpha=0.1)
    params, grads = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    optimizer = LessonOptimizer(config, params, grads)
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.01
    optimizer.step()
    np.testing.assert_allclose(params.numpy(), [-0.11, -0.11, -0.11], atol=1e-12)
