"""Space files for the validation tests: one valid base, and a table of bad files, each
differing from a valid one by the one rule it breaks (shared by the `spaces` tests and the
`hpsearch space validate` tests)."""

from __future__ import annotations

ALPHA = """
[[param]]
name = "alpha"
kind = "float"
tier = 1
low = 1e-4
high = 1.0
scale = "log"
default = 1e-3
"""


def alpha_with(**changes: str | None) -> str:
    """The ALPHA table with some lines replaced (`key="..."`) or added, or removed (`key=None`)."""
    lines = []
    for line in ALPHA.strip().splitlines():
        key = line.split("=")[0].strip()
        if key in changes:
            if changes[key] is not None:
                lines.append(f"{key} = {changes.pop(key)}")
            else:
                changes.pop(key)
            continue
        lines.append(line)
    lines += [f"{key} = {value}" for key, value in changes.items()]
    return "\n".join(lines) + "\n"


OPTIMIZER = """
[[param]]
name = "optimizer"
kind = "categorical"
tier = 2
choices = {choices}
default = "momentum"
"""

UNITS = """
[[param]]
name = "hidden_units"
kind = "int"
tier = {tier}
low = {low}
high = 512
scale = "pow2"
default = 128
"""

DECAY = """
[[param]]
name = "decay"
kind = "categorical"
tier = 1
choices = ["none", "inverse_time"]
default = "none"

[[param]]
name = "decay_rate"
kind = "float"
tier = 1
low = 0.01
high = 1.0
default = 1.0
when = {when}
"""

# (id, file text, what the message must contain: the parameter and the rule)
BAD_SPACES = [
    ("unknown-top-level-key", 'nmae = "x"\n' + ALPHA, ["unknown top-level key", "nmae"]),
    ("unknown-param-key", alpha_with(lo="1e-4"), ["`alpha`", "unknown key", "lo"]),
    ("wrong-type", alpha_with(low='"0.1"'), ["`alpha`", "`low` must be a number", "'0.1'"]),
    ("low-above-high", alpha_with(low="1.0", high="0.1"), ["`alpha`", "`low <= high`", "high=0.1"]),
    ("log-low-zero", alpha_with(low="0.0"), ["`alpha`", "`low > 0` must hold", "low=0.0"]),
    ("nan-bound", alpha_with(high="nan"), ["`alpha`", "`high` must be finite", "nan"]),
    ("inf-bound", alpha_with(high="inf"), ["`alpha`", "`high` must be finite", "inf"]),
    ("empty-choices", ALPHA + OPTIMIZER.format(choices="[]"), ["`optimizer`", "non-empty"]),
    ("duplicate-names", ALPHA + ALPHA, ["`alpha`", "unique", "twice"]),
    ("tier-gap", ALPHA + UNITS.format(tier=3, low=16), ["without a gap", "[2]"]),
    ("default-out-of-bounds", alpha_with(default="2.0"), ["`alpha`", "low <= default <= high"]),
    (
        "not-a-trainer-field",
        alpha_with(name='"learning_rate"'),
        ["`learning_rate`", "TrainConfig field"],
    ),
    ("pow2-bounds", ALPHA + UNITS.format(tier=2, low=10), ["`hidden_units`", "powers of two"]),
    ("unknown-scale", alpha_with(scale='"log10"'), ["`alpha`", "`scale` must be one of", "log10"]),
    ("unknown-kind", alpha_with(kind='"double"'), ["`alpha`", "`kind` must be one of", "double"]),
    ("grid-in-file", 'sampler = "grid"\n' + ALPHA, ["grid search is refused", "Bergstra"]),
    ("missing-tier", alpha_with(tier=None), ["`alpha`", "`tier` is required"]),
    ("tier-zero", alpha_with(tier="0"), ["`alpha`", "`tier` must be an integer >= 1"]),
    (
        "int-kind-float-field",
        alpha_with(kind='"int"', low="1", high="2", default="1"),
        ["`alpha`", "needs an int field"],
    ),
    (
        "choice-refused-by-trainer",
        ALPHA + OPTIMIZER.format(choices='["momentum", "sgd"]'),
        ["`optimizer`", "refused by TrainConfig", "sgd"],
    ),
    (
        "categorical-default-not-a-choice",
        ALPHA + OPTIMIZER.format(choices='["adam", "gd"]'),
        ["`optimizer`", "must be one of the choices"],
    ),
    (
        "when-unknown-parameter",
        ALPHA
        + DECAY.replace('name = "decay"\n', 'name = "init"\n')
        .replace('["none", "inverse_time"]', '["he"]')
        .replace('default = "none"', 'default = "he"')
        .format(when='{ decay = ["inverse_time"] }'),
        ["`decay_rate`", "`when` must name another"],
    ),
    (
        "when-value-typo",
        ALPHA + DECAY.format(when='{ decay = ["inverse-time"] }'),
        ["`decay_rate`", "refused by TrainConfig", "inverse-time"],
    ),
    (
        "one-minus-high-at-1",
        alpha_with(name='"beta"', low="0.9", high="1.0", default="0.9", transform='"one_minus"'),
        ["`beta`", "`high < 1`"],
    ),
    ("no-parameters", 'name = "empty"\n', ["at least one [[param]]"]),
    ("not-toml", "[[param]\nname = ", ["not valid TOML"]),
]


def good_base() -> str:
    """A valid file made of the same pieces as the bad ones."""
    return ALPHA + UNITS.format(tier=2, low=16) + OPTIMIZER.format(choices='["momentum", "adam"]')
