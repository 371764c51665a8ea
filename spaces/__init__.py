"""Search spaces as data: the lesson's priority order, validated, sampled at random.

Use: `space = load_space("lesson")` (or a path to a TOML file), then
`config_fields = space.suggest(trial, tiers=3)`.

The file format (spaces/builtin/lesson.toml is a commented example):

- top level: `name` (optional, default the file's stem), `description` (optional), `sampler`
  (optional: random | sobol | tpe; a grid is refused), and one `[[param]]` table per parameter.
- `[[param]]`: `name` (a TrainConfig field), `kind` (float | int | categorical), `tier` (1..N
  without gaps; `tiers = N` searches tiers 1..N), `default` (optional, TrainConfig's; used when
  the tier is not searched or the condition does not hold), `help` (optional), and
  - float/int: `low`, `high` (bounds on the value itself), `scale` (linear | log | pow2; pow2
    for int with power-of-two bounds, drawn as `log2_<name>`), `transform = "one_minus"`
    (float: draw 1 - value, as `one_minus_<name>`; beta 0.9 .. 0.999 on a log scale of 1 - beta);
  - categorical: `choices = [...]`;
  - `when = { optimizer = ["momentum", "rmsprop"] }` (optional): the parameter applies only when
    those parameters of the space hold one of the values; otherwise it keeps its default.
"""

from spaces.errors import SpaceError
from spaces.loader import BUILTIN_SPACES, list_builtin, load_space
from spaces.narrowing import narrow
from spaces.param import Param
from spaces.sampler_names import GRID_REFUSAL, SAMPLER_NAMES, check_sampler_name, is_grid_name
from spaces.space import Space

__all__ = [
    "BUILTIN_SPACES",
    "GRID_REFUSAL",
    "SAMPLER_NAMES",
    "Param",
    "Space",
    "SpaceError",
    "check_sampler_name",
    "is_grid_name",
    "list_builtin",
    "load_space",
    "narrow",
]
