"""Learning-rate decay: one pure function of (config, epoch), like nanoGPT's `get_lr(it)`.

`epoch` counts from 0 (the lesson's `epoch_nb`); the loop writes the value into every
`param_group["lr"]` at the start of each epoch.
"""

from __future__ import annotations

import bisect
import math

from trainers.config import TrainConfig


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch `epoch` (0 = first) under `config.decay`.

    - none:         alpha0
    - inverse_time: alpha0 / (1 + decay_rate * epoch)
    - exponential:  alpha0 * decay_base ** epoch            (the lesson's 0.97 ** epoch_nb)
    - inverse_sqrt: alpha0 * decay_k / sqrt(epoch); at epoch 0 the formula divides by zero,
                    so epoch 0 uses alpha0 itself (then epoch 1 gives alpha0 * k).
    - step:         alpha0 * decay_gamma ** (number of milestones <= epoch) ("manual decay")
    """
    if epoch < 0:
        raise ValueError(f"`epoch >= 0` must hold, but got {epoch=}")
    alpha0 = config.alpha
    if config.decay == "none":
        return alpha0
    if config.decay == "inverse_time":
        return alpha0 / (1.0 + config.decay_rate * epoch)
    if config.decay == "exponential":
        return alpha0 * config.decay_base**epoch
    if config.decay == "inverse_sqrt":
        return alpha0 if epoch == 0 else alpha0 * config.decay_k / math.sqrt(epoch)
    if config.decay == "step":
        passed = bisect.bisect_right(config.decay_milestones, epoch)
        return alpha0 * config.decay_gamma**passed
    raise ValueError(f"unknown decay {config.decay!r}")  # TrainConfig validated it already
