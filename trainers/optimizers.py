"""The lesson's four update rules, applied to one flat parameter tensor.

With W the parameters, dW the gradient of the current mini-batch and alpha the learning rate:

- gd:        W -= alpha * dW
- momentum:  V = beta * V + (1 - beta) * dW;  W -= alpha * V       (the lesson's averaging;
             torch.optim.SGD's momentum is V = beta * V + dW, which is not the same)
- rmsprop:   S = beta * S + (1 - beta) * dW**2;  W -= alpha * dW / (sqrt(S) + epsilon)
             (no bias correction, as in the lesson and torch.optim.RMSprop)
- adam:      V = beta1 * V + (1 - beta1) * dW;  S = beta2 * S + (1 - beta2) * dW**2
             V_corr = V / (1 - beta1**t);  S_corr = S / (1 - beta2**t)
             W -= alpha * V_corr / sqrt(S_corr + epsilon)
             epsilon sits INSIDE the square root, as the lesson writes it; torch.optim.Adam
             puts it outside (sqrt(S_corr) + epsilon). With the default epsilon = 1e-8 the two
             differ only for coordinates whose S_corr is below ~1e-8.

Because all parameters are one tensor, each step is 1 to 6 element-wise ops whatever the
number of layers. The learning rate is read from `param_groups[0]["lr"]` (the loop writes
`learning_rate(config, epoch)` there, like nanoGPT's loop does with torch optimizers).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainers.config import TrainConfig


class LessonOptimizer:
    """`step()` updates `params` in place from `grads` (both flat tensors of one shape)."""

    def __init__(self, config: TrainConfig, params: torch.Tensor, grads: torch.Tensor) -> None:
        self.kind = config.optimizer
        self.params = params
        self.grads = grads
        self.param_groups: list[dict[str, Any]] = [{"lr": config.alpha}]
        self.beta = config.beta
        self.beta1 = config.beta1
        self.beta2 = config.beta2
        self.epsilon = config.epsilon
        self.t = 0  # steps taken, for Adam's bias correction (a Python int: no device sync)
        needs_v = self.kind in ("momentum", "adam")
        needs_s = self.kind in ("rmsprop", "adam")
        self.v = torch.zeros_like(params) if needs_v else None
        self.s = torch.zeros_like(params) if needs_s else None
        self._step = {
            "gd": self._gd,
            "momentum": self._momentum,
            "rmsprop": self._rmsprop,
            "adam": self._adam,
        }[self.kind]

    def step(self) -> None:
        self.t += 1
        self._step(self.param_groups[0]["lr"])

    def _gd(self, lr: float) -> None:
        self.params.add_(self.grads, alpha=-lr)

    def _momentum(self, lr: float) -> None:
        assert self.v is not None
        self.v.lerp_(self.grads, 1.0 - self.beta)  # v + (1-beta)(g - v) = beta v + (1-beta) g
        self.params.add_(self.v, alpha=-lr)

    def _rmsprop(self, lr: float) -> None:
        assert self.s is not None
        self.s.mul_(self.beta).addcmul_(self.grads, self.grads, value=1.0 - self.beta)
        denominator = self.s.sqrt().add_(self.epsilon)
        self.params.addcdiv_(self.grads, denominator, value=-lr)

    def _adam(self, lr: float) -> None:
        assert self.v is not None and self.s is not None
        self.v.lerp_(self.grads, 1.0 - self.beta1)
        self.s.mul_(self.beta2).addcmul_(self.grads, self.grads, value=1.0 - self.beta2)
        correction1 = 1.0 - self.beta1**self.t
        correction2 = 1.0 - self.beta2**self.t
        # sqrt(S / c2 + eps) = sqrt(S + eps * c2) / sqrt(c2): one fewer full-size op per step.
        denominator = self.s.add(self.epsilon * correction2).sqrt_()
        self.params.addcdiv_(self.v, denominator, value=-lr * math.sqrt(correction2) / correction1)
