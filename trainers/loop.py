"""`train()`: the one visible training loop (the shape of nanoGPT's train.py).

Data stays on the device; each epoch draws one permutation of the training rows and a
mini-batch is an index slice of it (`index_select`), not a per-sample DataLoader. The loop
never calls `.item()` inside an epoch: the training loss is accumulated on the device, and
everything the epoch reports is gathered into one tensor and copied to the host once, after
the epoch (one device sync per epoch).

Gradient health is accumulated over every mini-batch: `grad_norm/<i>` is the largest L2 norm
of layer i's gradient (its weight and bias gradients together) over the epoch's mini-batches,
kept on the device with `fmax` (so a later NaN does not hide the finite spike before it; this
costs ~10 us per step). An explosion or a non-finite loss anywhere in the epoch is therefore
seen at the end of that epoch, which is when the run stops.

On the CPU the loop turns on flush-to-zero for denormal floats (`torch.set_flush_denormal`,
a process-wide setting): a vanishing signal is full of denormals, which x86 CPUs process about
100x slower, and they never change what a network learns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from trainers.config import TrainConfig
from trainers.data import DeviceData
from trainers.model import MLP, build_mlp
from trainers.optimizers import LessonOptimizer
from trainers.result import TrainOutcome, TrainResult, default_metric
from trainers.schedules import learning_rate
from trainers.torch_internals import foreach_norm

Report = Callable[[int, dict[str, float]], bool | None]
EVAL_CHUNK = 65_536  # validation rows per forward pass (bounds memory on large datasets)


@torch.no_grad()
def train(config: TrainConfig, data: DeviceData, report: Report | None = None) -> TrainResult:
    """Train an MLP shaped by `config` on `data`; call `report(epoch, metrics)` each epoch.

    Never raises on numerical blow-up: a non-finite loss or a layer's gradient norm above
    `config.explode_threshold` ends the run with outcome "diverged" and a reason. A truthy
    `report` return value ends it with outcome "pruned". `report` is not called for an epoch
    that diverged (its values are in `history`).
    """
    started = time.perf_counter()
    device = data.device
    classification = data.task == "classification"
    model = build_mlp(config, data.n_features, data.n_outputs, device)
    optimizer = LessonOptimizer(config, model.params, model.grads)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    if device.type == "cpu":
        torch.set_flush_denormal(True)

    x_train, y_train = data.x_train, data.y_train
    if classification:  # one-hot rows, sliced per batch like the inputs
        y_train = torch.nn.functional.one_hot(y_train, data.n_outputs).to(torch.float32)
    n_train, batch_size = data.n_train, config.batch_size
    starts = range(0, n_train, batch_size)
    # 1/B per batch, precomputed: the last batch may be smaller.
    inv_sizes = [1.0 / (min(s + batch_size, n_train) - s) for s in starts]
    metric_name, direction = default_metric(data.task)

    history: list[dict[str, float]] = []
    flags: list[str] = []
    outcome: TrainOutcome = "complete"
    reason: str | None = None
    best_value, best_epoch = -math.inf if direction == "maximize" else math.inf, 0

    for epoch in range(config.epochs):
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(n_train, generator=generator, device=device)
        loss_sum = torch.zeros((), device=device)
        max_norms = torch.zeros(model.n_layers, device=device)
        for start, inv_size in zip(starts, inv_sizes, strict=True):
            rows = order[start : start + batch_size]
            xb, yb = x_train.index_select(0, rows), y_train.index_select(0, rows)
            out, activations = model.forward_with_activations(xb)
            if classification:
                log_probs = out.log_softmax(1)
                loss_sum.sub_(torch.vdot(log_probs.view(-1), yb.view(-1)), alpha=inv_size)
                grad_out = log_probs.exp_().sub_(yb).mul_(inv_size)  # d(mean CE)/d(logits)
            else:
                diff = out.sub_(yb)
                loss_sum.add_(torch.vdot(diff.view(-1), diff.view(-1)), alpha=inv_size)
                grad_out = diff.mul_(2.0 * inv_size)  # d(mean squared error)/d(output)
            model.backward(grad_out, activations)
            torch.fmax(max_norms, torch.stack(foreach_norm(model.layer_grads)), out=max_norms)
            optimizer.step()

        metrics = _epoch_values(model, data, loss_sum / len(inv_sizes), max_norms, lr)
        history.append({"epoch": epoch + 1, **metrics})
        reason = _divergence(metrics, model.n_layers, config.explode_threshold, epoch + 1)
        if reason is not None:
            outcome = "diverged"
            if reason.startswith("gradient norm") and "exploding_gradients" not in flags:
                flags.append("exploding_gradients")
            break
        first, last = metrics["grad_norm/0"], metrics[f"grad_norm/{model.n_layers - 1}"]
        if first < config.vanish_ratio * last and "vanishing_gradients" not in flags:
            flags.append("vanishing_gradients")
        if report is not None and report(epoch + 1, metrics):
            outcome, reason = "pruned", f"pruned by the report callback at epoch {epoch + 1}"
            break
        value = metrics[metric_name]
        if (value > best_value) if direction == "maximize" else (value < best_value):
            best_value, best_epoch = value, epoch + 1
        patience = config.early_stopping_patience
        if patience and epoch + 1 - best_epoch >= patience:
            flags.append("early_stopped")
            reason = (
                f"early stopping: {metric_name} did not improve on {best_value:.6g} "
                f"(epoch {best_epoch}) for {patience} epochs"
            )
            break

    final = history[-1]
    if config.early_stopping_patience and outcome == "complete" and best_epoch:
        final = history[best_epoch - 1]
    return TrainResult(
        outcome=outcome,
        reason=reason,
        metrics={k: v for k, v in final.items() if k != "epoch"},
        history=history,
        epochs_run=len(history),
        wall_time_s=time.perf_counter() - started,
        device=str(device),
        flags=flags,
        model=model,
    )


def _epoch_values(
    model: MLP, data: DeviceData, train_loss: torch.Tensor, grad_norms: torch.Tensor, lr: float
) -> dict[str, float]:
    """Validation metrics and gradient norms, copied to the host in one transfer."""
    names = ["train_loss"]
    parts = [train_loss.reshape(1)]
    if data.task == "classification":
        loss_sum = torch.zeros((), device=data.device)
        correct = torch.zeros((), device=data.device)
        for x, y in _chunks(data.x_val, data.y_val):
            logits = model.forward(x)
            loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        n = data.y_val.shape[0]
        names += ["val_loss", "val_accuracy"]
        parts += [(loss_sum / n).reshape(1), (correct / n).reshape(1)]
    else:
        squared = torch.zeros((), device=data.device)
        absolute = torch.zeros((), device=data.device)
        for x, y in _chunks(data.x_val, data.y_val):
            diff = model.forward(x).sub_(y)
            squared += diff.square().sum()
            absolute += diff.abs().sum()
        n = data.y_val.shape[0]
        names += ["val_loss", "val_rmse", "val_mae"]
        mse = squared / n
        scale = data.target_scale  # back to the target's original units
        parts += [
            mse.reshape(1),
            (mse.sqrt() * scale).reshape(1),
            (absolute / n * scale).reshape(1),
        ]
    names += [f"grad_norm/{i}" for i in range(len(grad_norms))]
    parts.append(grad_norms)
    host = torch.cat(parts).tolist()  # the device sync point of the epoch
    n_metrics = len(names) - len(grad_norms)
    values = dict(zip(names[:n_metrics], host[:n_metrics], strict=True))
    values["lr"] = lr
    values.update(zip(names[n_metrics:], host[n_metrics:], strict=True))
    return values


def _chunks(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + EVAL_CHUNK], y[i : i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)]


def _divergence(
    metrics: dict[str, float], n_layers: int, threshold: float, epoch: int
) -> str | None:
    """Why this epoch counts as diverged, or None.

    Gradient norms come first: they are the cause when the loss then overflowed to nan.
    """
    norms = [metrics[f"grad_norm/{i}"] for i in range(n_layers)]
    worst = max(range(n_layers), key=lambda i: norms[i] if math.isfinite(norms[i]) else math.inf)
    if not math.isfinite(norms[worst]):
        return f"gradient norm of layer {worst} became {norms[worst]} at epoch {epoch}"
    if norms[worst] > threshold:
        return (
            f"gradient norm of layer {worst} reached {norms[worst]:.3g} "
            f"(> explode_threshold={threshold:g}) at epoch {epoch}"
        )
    for key in ("train_loss", "val_loss"):
        if not math.isfinite(metrics[key]):
            what = "loss" if key == "train_loss" else "validation loss"
            return f"{what} became {metrics[key]} at epoch {epoch}"
    return None
