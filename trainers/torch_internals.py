"""The private or undocumented torch operators the trainer relies on, in one place.

The hand-written backward pass (trainers/model.py) and the per-layer gradient norms
(trainers/loop.py) call ATen operators directly: they skip autograd's graph and the Python
wrappers, which is most of the cost of a step for the small networks of a search. These are not
public API: a torch release may rename or change one. Each is reached only through this module,
and tests/trainers/test_torch_internals.py checks each against its public equivalent on the
pinned torch (constraints.txt): an upgrade that changes one fails there, by name.

- `relu_backward`, `tanh_backward`, `sigmoid_backward` (`torch.ops.aten.*_backward`): the
  gradient through the activation, given the gradient w.r.t. its output and that output.
- `foreach_norm` (`torch._foreach_norm`): the L2 norm of each tensor of a list, in one kernel
  launch rather than one per layer.
"""

from __future__ import annotations

import torch

# Every ATen call returns `Any` to a type checker (torch.ops is resolved at run time); the
# annotations below are the contract the test checks.


def relu_backward(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """d(loss)/d(x) for out = relu(x): `grad` where out > 0, else 0."""
    result: torch.Tensor = torch.ops.aten.threshold_backward(grad, out, 0)
    return result


def tanh_backward(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """d(loss)/d(x) for out = tanh(x): grad * (1 - out ** 2)."""
    result: torch.Tensor = torch.ops.aten.tanh_backward(grad, out)
    return result


def sigmoid_backward(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """d(loss)/d(x) for out = sigmoid(x): grad * out * (1 - out)."""
    result: torch.Tensor = torch.ops.aten.sigmoid_backward(grad, out)
    return result


def foreach_norm(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The L2 norm of each tensor (0-dim tensors, on the tensors' device)."""
    return torch._foreach_norm(tensors)


__all__ = ["foreach_norm", "relu_backward", "sigmoid_backward", "tanh_backward"]
