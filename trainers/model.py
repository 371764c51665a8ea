"""The MLP: parameters in one flat tensor, forward and backward written out by hand.

Why by hand: for the small networks of a hyperparameter search the cost of a training step
is Python and dispatcher overhead, not arithmetic. Keeping every weight and bias as a view of
one flat `params` tensor (and every gradient as a view of one flat `grads` tensor) lets an
optimizer step be a handful of element-wise ops on one tensor, and an explicit backward pass
(matrix products written straight into the gradient views) skips autograd's graph
bookkeeping. `tests/trainers/test_model.py` checks the gradients against `torch.autograd`.

Layer i maps `sizes[i]` to `sizes[i + 1]`; its weight `W_i` has shape `(out, in)` and its
bias is `b_i`; `W_i` and `b_i` are adjacent in `params`, so `layer_grads[i]` is one
contiguous view holding both (its norm is "the gradient norm of layer i").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from trainers.config import TrainConfig
from trainers.torch_internals import relu_backward, sigmoid_backward, tanh_backward

Activation = Callable[[torch.Tensor], torch.Tensor]
ActivationBackward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_FORWARD: dict[str, Activation] = {
    "relu": torch.Tensor.relu_,
    "tanh": torch.Tensor.tanh_,
    "sigmoid": torch.Tensor.sigmoid_,
}

# Each takes (gradient w.r.t. the activation's output, the activation's output).
_BACKWARD: dict[str, ActivationBackward] = {
    "relu": relu_backward,
    "tanh": tanh_backward,
    "sigmoid": sigmoid_backward,
}


class MLP:
    """A fully connected network `sizes[0] -> ... -> sizes[-1]` with one hidden activation."""

    def __init__(self, sizes: list[int], activation: str, device: torch.device) -> None:
        self.sizes = list(sizes)
        self.activation = activation
        shapes = list(zip(sizes[1:], sizes[:-1], strict=True))  # (out, in) per layer
        total = sum(o * i + o for o, i in shapes)
        self.params = torch.zeros(total, dtype=torch.float32, device=device)
        self.grads = torch.zeros_like(self.params)
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        self.weight_grads: list[torch.Tensor] = []
        self.bias_grads: list[torch.Tensor] = []
        self.layer_grads: list[torch.Tensor] = []
        offset = 0
        for out_dim, in_dim in shapes:
            w_end = offset + out_dim * in_dim
            end = w_end + out_dim
            self.weights.append(self.params[offset:w_end].view(out_dim, in_dim))
            self.biases.append(self.params[w_end:end])
            self.weight_grads.append(self.grads[offset:w_end].view(out_dim, in_dim))
            self.bias_grads.append(self.grads[w_end:end])
            self.layer_grads.append(self.grads[offset:end])
            offset = end
        # Transposed views made once: `addmm(b, a, W.T)` is the layer's forward.
        self._weights_t = [w.t() for w in self.weights]
        self._forward_act = _FORWARD.get(activation)
        self._backward_act = _BACKWARD.get(activation)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def n_params(self) -> int:
        return int(self.params.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output (logits or a regression value), without keeping activations."""
        return self.forward_with_activations(x)[0]

    def forward_with_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(output, [input, hidden activation 1, ..., hidden activation L-1]) for `backward`."""
        activations = [x]
        a = x
        last = self.n_layers - 1
        for i in range(last):
            a = torch.addmm(self.biases[i], a, self._weights_t[i])
            if self._forward_act is not None:
                a = self._forward_act(a)  # in place: `a` is a fresh tensor
            activations.append(a)
        return torch.addmm(self.biases[last], a, self._weights_t[last]), activations

    def backward(self, grad_out: torch.Tensor, activations: list[torch.Tensor]) -> None:
        """Write d(loss)/d(params) into `grads`, given d(loss)/d(output) and the activations."""
        grad = grad_out
        for i in range(self.n_layers - 1, -1, -1):
            torch.mm(grad.t(), activations[i], out=self.weight_grads[i])
            torch.sum(grad, 0, out=self.bias_grads[i])
            if i == 0:
                break
            grad = grad.mm(self.weights[i])
            if self._backward_act is not None:
                grad = self._backward_act(grad, activations[i])

    def to_module(self) -> torch.nn.Sequential:
        """The same network as a standard `torch.nn.Sequential` (on the CPU), for saving/serving.

        Training keeps the flat hand-written form for speed; users load models with plain
        PyTorch, so a trained network is handed out as `Linear`/activation layers.
        """
        layers: list[torch.nn.Module] = []
        act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                linear.weight.copy_(weight.detach().cpu())
                linear.bias.copy_(bias.detach().cpu())
            layers.append(linear)
            if i < self.n_layers - 1 and self.activation in act:
                layers.append(act[self.activation]())
        return torch.nn.Sequential(*layers)

    def activation_norms(self, x: torch.Tensor) -> list[float]:
        """Mean L2 norm per sample of each layer's output (hidden activations, then output)."""
        out, activations = self.forward_with_activations(x)
        return [float(a.norm(dim=1).mean()) for a in [*activations[1:], out]]


def build_mlp(config: TrainConfig, n_inputs: int, n_outputs: int, device: torch.device) -> MLP:
    """An MLP shaped by `config` with weights drawn from `config.seed` (biases start at zero).

    Weights are drawn on the CPU from a generator seeded with `config.seed` and then copied to
    the device, so a seed means the same initial weights on every device.
    """
    sizes = [n_inputs] + [config.hidden_units] * config.hidden_layers + [n_outputs]
    model = MLP(sizes, config.activation, device)
    generator = torch.Generator().manual_seed(config.seed)
    for weight in model.weights:
        out_dim, in_dim = weight.shape
        weight.copy_(init_weight(config.init, out_dim, in_dim, config.init_scale, generator))
    return model


def init_weight(
    scheme: str, out_dim: int, in_dim: int, scale: float, generator: torch.Generator
) -> torch.Tensor:
    """An `(out_dim, in_dim)` float32 weight matrix drawn by `scheme` (on the CPU).

    - he:              N(0, 2 / n_in)            (the lesson's randn * sqrt(2 / n_(l-1)))
    - xavier:          N(0, 1 / n_in)            (the lesson's Var(w) = 1 / n)
    - glorot_uniform:  U(-a, a), a = sqrt(6 / (n_in + n_out))
    - default:         PyTorch's nn.Linear default, U(-1/sqrt(n_in), 1/sqrt(n_in))
                       (kaiming_uniform_ with a=sqrt(5)); the bias still starts at zero
    - scaled_identity: `scale * I` for a square layer (the lesson's 1.3 * I); a non-square
                       layer gets `scale` times the identity-like slice `torch.eye(out, in)`
                       (input i feeds unit i while both exist; the other rows/columns are 0)
    - fixed_normal:    N(0, scale**2), the same std for every layer whatever its width
    """
    shape = (out_dim, in_dim)
    if scheme == "he":
        return torch.randn(shape, generator=generator) * math.sqrt(2.0 / in_dim)
    if scheme == "xavier":
        return torch.randn(shape, generator=generator) * math.sqrt(1.0 / in_dim)
    if scheme == "glorot_uniform":
        bound = math.sqrt(6.0 / (in_dim + out_dim))
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound
    if scheme == "default":
        bound = 1.0 / math.sqrt(in_dim)
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound
    if scheme == "scaled_identity":
        return torch.eye(out_dim, in_dim) * scale
    if scheme == "fixed_normal":
        return torch.randn(shape, generator=generator) * scale
    raise ValueError(f"unknown init scheme {scheme!r}")  # TrainConfig validated it already
