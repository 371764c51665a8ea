"""What an experiment hands back (a table, a figure, a verdict) and how it is published: CSV,
markdown and PNG files in the output folder, the same on the lesson's MLflow parent run, and
the table and verdict printed in the terminal.

Figures are matplotlib `Figure`s on an Agg canvas (no pyplot: no global state, no GUI
backend), like `search.tracking`'s plots.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from search.lesson.verdict import Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from search.lesson.context import LessonContext

# One colour per arm, in arm order, the same in every figure.
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |"]
        lines.append("| " + " | ".join("---" for _ in self.columns) + " |")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def terminal(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in self.rows]
        return "\n".join(lines)

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            writer.writerows(self.rows)


@dataclass
class Outcome:
    """An experiment's result: the table, the figure, the verdict and notes on the setup."""

    table: Table
    figure: Figure
    verdict: Verdict
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # per-seed numbers, for the JSON file


def new_figure(columns: int, width: float = 5.2, height: float = 4.2) -> tuple[Figure, Any]:
    """A headless figure with `columns` panels side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * columns, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, columns, squeeze=False)[0]
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    return fig, axes


def title_with_verdict(fig: Figure, title: str, verdict: Verdict) -> None:
    colour = "tab:green" if verdict.supported else "tab:red"
    fig.suptitle(f"{title}  —  claim {verdict.word}", color=colour, fontsize=13)


def publish(ctx: LessonContext, outcome: Outcome, out: TextIO) -> list[Path]:
    """Write NAME.png, NAME.csv, NAME.md and NAME.json to the output folder, put them on the
    lesson's MLflow parent run, end that run, and print the table and verdict."""
    folder = ctx.options.out_dir
    folder.mkdir(parents=True, exist_ok=True)
    name = ctx.name
    png, csv_path, md, js = (folder / f"{name}.{ext}" for ext in ("png", "csv", "md", "json"))
    outcome.figure.savefig(png, format="png")
    outcome.table.write_csv(csv_path)
    md.write_text(markdown_report(ctx, outcome))
    js.write_text(
        json.dumps(
            {
                "lesson": name,
                "settings": ctx.settings(),
                "verdict": outcome.verdict.to_dict(),
                "notes": outcome.notes,
                "data": outcome.data,
            },
            indent=1,
            default=_json_default,
        )
        + "\n"
    )
    files = [png, csv_path, md, js]
    ctx.finish(files, outcome.verdict)
    print(f"\n{name}: {ctx.sizes.dataset}", file=out)
    print(outcome.table.terminal(), file=out)
    for note in outcome.notes:
        print(f"note: {note}", file=out)
    print(outcome.verdict.text(), file=out)
    return files


def markdown_report(ctx: LessonContext, outcome: Outcome) -> str:
    s = ctx.sizes
    trials = f", {s.trials} trials per arm and seed" if s.trials is not None else ""
    lines = [
        f"# `hpsearch lesson {ctx.name}`",
        "",
        f"Dataset `{Path(s.dataset).name}`, {_count(s.seeds, 'seed')}, "
        f"{_count(s.epochs, 'epoch')}{trials}.",
        "",
        f"![{ctx.name}]({ctx.name}.png)",
        "",
        outcome.table.markdown(),
        *[f"- {note}" for note in outcome.notes],
        "",
        f"**Claim:** {outcome.verdict.claim}",
        "",
        f"**Verdict: {outcome.verdict.word}.** Rule: {outcome.verdict.rule}",
        "",
        *[f"- {line}" for line in outcome.verdict.evidence],
        "",
    ]
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    return repr(value)


def arm_legend(ax: Any, handles: Sequence[Any] | None = None) -> None:
    if ax.has_data():
        ax.legend(handles=handles, fontsize=8)
