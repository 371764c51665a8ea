"""The private torch operators of trainers/torch_internals.py do what the trainer relies on.

Each is checked against its public equivalent (autograd, `torch.linalg.vector_norm`) on the
pinned torch. When an upgrade renames or changes one, this file fails, naming it: fix
trainers/torch_internals.py, nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from trainers import torch_internals

ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "relu": (torch.relu, "relu_backward"),
    "tanh": (torch.tanh, "tanh_backward"),
    "sigmoid": (torch.sigmoid, "sigmoid_backward"),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_matches_autograd(name: str) -> None:
    forward, backward_name = ACTIVATIONS[name]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 9, generator=generator, requires_grad=True)
    grad = torch.randn(64, 9, generator=generator)
    out = forward(x)
    (expected,) = torch.autograd.grad(out, x, grad)
    backward = getattr(torch_internals, backward_name)
    got = backward(grad, out.detach())
    assert isinstance(got, torch.Tensor) and got.shape == x.shape, (
        f"torch {torch.__version__}: {backward_name} no longer returns the input's gradient"
    )
    torch.testing.assert_close(got, expected, msg=f"torch {torch.__version__}: {backward_name}")


def test_foreach_norm_is_each_tensors_l2_norm() -> None:
    generator = torch.Generator().manual_seed(1)
    tensors = [torch.randn(n, generator=generator) for n in (3, 50, 1)]
    norms = torch_internals.foreach_norm(tensors)
    assert len(norms) == len(tensors)
    expected = torch.stack([torch.linalg.vector_norm(t) for t in tensors])
    torch.testing.assert_close(
        torch.stack(list(norms)), expected, msg=f"torch {torch.__version__}: _foreach_norm"
    )


def test_foreach_norm_keeps_an_inf_and_a_nan() -> None:
    # Divergence is detected from these norms (trainers/loop.py): they must not be clipped.
    norms = torch_internals.foreach_norm(
        [torch.tensor([float("inf"), 1.0]), torch.tensor([float("nan"), 1.0])]
    )
    assert torch.isinf(norms[0]) and torch.isnan(norms[1])


def test_the_trainer_names_no_private_torch_api_outside_this_module() -> None:
    import ast
    from pathlib import Path

    import trainers

    root = Path(trainers.__file__).parent
    offenders = []
    for source in sorted(root.glob("*.py")):
        if source.name == "torch_internals.py":
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Attribute) and (
                node.attr.startswith("_") and not node.attr.startswith("__")
            ):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id == "torch":
                    offenders.append(f"{source.name}:{node.lineno} torch...{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "ops":
                base = node.value
                if isinstance(base, ast.Name) and base.id == "torch":
                    offenders.append(f"{source.name}:{node.lineno} torch.ops")
    assert not offenders, offenders
