"""Render BENCHMARKS.md from `bench/results/*.json`.

The table has one line per measured figure: what, ours, theirs, ratio, target, met?. Below
it, each benchmark's machine, date, command, settings and notes say what produced its rows.
A benchmark whose JSON is missing gets one line, "not run", with the reason (from the run log
`bench/results/_runs.json` that `python -m bench` keeps, or "no result file").

Results written by other modules may use another schema: a JSON without a list of row dicts
is rendered generically, one row per (flattened) key, rather than refused.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, RESULTS_DIR

RUN_LOG_NAME = "_runs.json"
# Every benchmark the issue asks for, in the order the table shows them; others found in
# bench/results are appended after these.
EXPECTED = ("storage", "study", "trainer", "tracking_requests", "peer_tracking", "grid", "gpu")
COLUMNS = ("benchmark", "what", "ours", "theirs", "ratio", "target", "met?")
# Keys that describe the run rather than measure something (kept out of generic rows).
META_KEYS = {"name", "date", "machine", "command", "notes", "settings", "status", "rows"}
# In another schema: top-level keys that say what the benchmark is (shown as a note) ...
DESCRIPTION_KEYS = {"benchmark", "title", "description", "note"}
# ... and scalar keys that are settings that move the numbers rather than figures.
SETTING_KEYS = {
    "torch_threads", "threads", "repeats", "workers", "server_workers", "mlflow_server_workers",
    "seeds", "epochs", "trials", "n_trials", "device",
}  # fmt: skip
# A key such as "dataloader_over_ours >= 1.25" under a "targets" mapping, with a bool value.
TARGET_KEY = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|<|>)\s*(\S.*)$")
GENERIC_ROW_LIMIT = 40


@dataclass
class Result:
    """One benchmark's result as the report needs it, whatever schema its JSON had."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    date: str | None = None
    command: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing_reason: str | None = None  # set when there is nothing measured to show


def load_results(
    results_dir: Path = RESULTS_DIR, expected: Sequence[str] = EXPECTED
) -> list[Result]:
    """Every expected benchmark (present or not), then any other result file found."""
    run_log = _read_json(results_dir / RUN_LOG_NAME)
    run_log = run_log if isinstance(run_log, dict) else {}
    found = sorted(p.stem for p in results_dir.glob("*.json") if not p.name.startswith(("_", ".")))
    names = list(expected) + [n for n in found if n not in expected]
    return [_load_one(results_dir / f"{name}.json", name, run_log.get(name)) for name in names]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"status": f"not run: unreadable result file {path.name}: {exc}"}


def _load_one(path: Path, name: str, run: Mapping[str, Any] | None) -> Result:
    data = _read_json(path)
    if data is None:
        return Result(name=name, missing_reason=_missing_reason(name, run))
    if not isinstance(data, dict):
        data = {"value": data}
    result = Result(
        name=str(data.get("name") or name),
        date=_text_or_none(data.get("date")),
        command=_text_or_none(data.get("command")),
        machine=data.get("machine") if isinstance(data.get("machine"), dict) else {},
        settings=data.get("settings") if isinstance(data.get("settings"), dict) else {},
        notes=_as_lines(data.get("notes")),
    )
    rows = data.get("rows")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        result.rows = [_normalize_row(r) for r in rows]
    else:
        for key in DESCRIPTION_KEYS & data.keys():
            result.notes.insert(0, f"{key}: {data[key]}")
        for key in SETTING_KEYS & data.keys():
            if not isinstance(data[key], dict | list):
                result.settings.setdefault(key, data[key])
        skip = DESCRIPTION_KEYS | SETTING_KEYS
        result.rows = _generic_rows({k: v for k, v in data.items() if k not in skip})
    if result.command is None:
        result.command = _default_command(path, run)
    status = data.get("status")
    if isinstance(status, str) and status.strip().lower().startswith("not run"):
        result.missing_reason = status.strip()[len("not run") :].lstrip(" :") or "no reason given"
    elif not result.rows:
        result.missing_reason = "the result file holds no figures"
    if run and run.get("rc") not in (0, None):
        # A stale file from an earlier, successful run: keep its figures, say they are stale.
        result.notes.insert(0, f"the latest run failed ({_run_summary(run)}); figures are older")
    return result


def _default_command(path: Path, run: Mapping[str, Any] | None) -> str | None:
    """For a JSON that does not record its command: the module `python -m bench` runs for it."""
    if run and run.get("module"):
        module = Path(str(run["module"])).with_suffix("").as_posix().replace("/", ".")
        return f".venv/bin/python -m {module}"
    bench_dir = path.parent.parent
    for stem in (f"{path.stem}_bench", path.stem):
        if (bench_dir / f"{stem}.py").exists() and bench_dir.name == "bench":
            return f".venv/bin/python -m bench.{stem}"
    return None


def _missing_reason(name: str, run: Mapping[str, Any] | None) -> str:
    if run is None:
        return f"no bench/results/{name}.json (the benchmark has not been run)"
    if run.get("rc") in (0, None):
        return f"{run.get('module', name)} ran but wrote no bench/results/{name}.json"
    return _run_summary(run)


def _run_summary(run: Mapping[str, Any]) -> str:
    module = run.get("module", "?")
    if run.get("timed_out"):
        return f"{module} timed out after {run.get('seconds')} s"
    tail = str(run.get("error") or "").strip().splitlines()
    last = tail[-1] if tail else "no error output"
    return f"{module} failed (exit {run.get('rc')}): {last}"


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _as_lines(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v, default=str) for v in value]
    return [json.dumps(value, default=str)]


def _normalize_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Our row keys, tolerating near-misses (`name`/`metric` for what, `value` for ours...)."""
    what = raw.get("what", raw.get("name", raw.get("metric", "?")))
    ours = raw.get("ours", raw.get("value"))
    known = {"what", "name", "metric", "ours", "value", "theirs", "ratio", "unit", "target", "met"}
    extras = {k: v for k, v in raw.items() if k not in known}
    if extras:  # unknown keys are shown, not dropped: they may be the point of the row
        what = f"{what} ({', '.join(f'{k}={_fmt(v)}' for k, v in extras.items())})"
    return {
        "what": str(what),
        "ours": ours,
        "theirs": raw.get("theirs"),
        "ratio": raw.get("ratio"),
        "unit": str(raw.get("unit") or ""),
        "target": raw.get("target"),
        "met": raw.get("met"),
    }


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for i, inner in enumerate(value):
            yield from _flatten(inner, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _generic_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An unknown schema: one row per measured leaf, named by its dotted path.

    A boolean under a `targets`-like mapping whose key reads "NAME OP VALUE" is attached to the
    row of the leaf named NAME (its target and met? columns) instead of making a row of its own.
    """
    rows: list[dict[str, Any]] = []
    targets: list[tuple[str, str, Any]] = []  # (leaf name, "OP VALUE", met)
    for key, value in data.items():
        if key in META_KEYS:
            continue
        for path, leaf in _flatten(value, key):
            match = TARGET_KEY.match(path.split(".", 1)[-1]) if "target" in key.lower() else None
            if match and isinstance(leaf, bool):
                targets.append((match.group(1), f"{match.group(2)} {match.group(3)}", leaf))
                continue
            rows.append(_note_row(path) | {"ours": leaf})
    for name, target, met in targets:
        owner = next((r for r in rows if r["what"].split(".")[-1] == name), None)
        if owner is None:
            rows.append(_note_row(name) | {"target": target, "met": met})
        else:
            owner.update(target=target, met=met)
    if len(rows) > GENERIC_ROW_LIMIT:
        left = len(rows) - GENERIC_ROW_LIMIT
        rows = rows[:GENERIC_ROW_LIMIT]
        rows.append(_note_row(f"... {left} more values in the JSON"))
    return rows


def _note_row(text: str) -> dict[str, Any]:
    return {"what": text, "ours": None, "theirs": None, "ratio": None, "unit": ""} | {
        "target": None,
        "met": None,
    }


# --- formatting -----------------------------------------------------------------------------


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            text = str(value)
        elif value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            text = f"{value:.3g}"
        else:
            text = f"{value:.4g}"
    elif isinstance(value, list) and len(value) > 3 and all(_is_number(v) for v in value):
        # A list of repeats: its median and range say more than every value.
        text = (
            f"median {_fmt(statistics.median(value))} "
            f"(n={len(value)}, {_fmt(min(value))}..{_fmt(max(value))})"
        )
    elif isinstance(value, list | dict):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = f"{text} {unit}" if unit and text != "—" else text
    return _cell(text)


def _cell(text: str) -> str:
    # A pipe or newline inside a cell would break the Markdown table.
    return text.replace("|", "\\|").replace("\n", " ")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt_ratio(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.3g}x"
    return _fmt(value)


def _fmt_met(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "**no**"
    return _fmt(value)


def render_table(results: Sequence[Result]) -> list[str]:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for result in results:
        link = f"[{result.name}](#{result.name.replace('_', '-')})"
        if result.missing_reason is not None and not result.rows:
            reason = _cell(f"not run: {result.missing_reason}")
            lines.append(f"| {link} | {reason} | — | — | — | — | — |")
            continue
        for r in result.rows:
            unit = r.get("unit", "")
            cells = [
                link,
                _cell(r["what"]),
                _fmt(r["ours"], unit),
                _fmt(r["theirs"], unit),
                _fmt_ratio(r["ratio"]),
                _fmt(r["target"]),
                _fmt_met(r["met"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _machine_line(machine: Mapping[str, Any]) -> str:
    if not machine:
        return "not recorded"
    order = ("cpu", "cores", "torch_threads", "gpu", "python", "torch", "optuna", "mlflow")
    keys = [k for k in order if k in machine] + [k for k in machine if k not in order]
    return ", ".join(f"{k}: {_fmt(machine[k])}" for k in keys)


def render_details(results: Sequence[Result]) -> list[str]:
    lines: list[str] = []
    for result in results:
        lines += ["", f"### {result.name}", ""]
        if result.missing_reason is not None and not result.rows:
            lines.append(f"Not run: {result.missing_reason}.")
            continue
        if result.missing_reason is not None:
            lines.append(f"- status: not run: {result.missing_reason}")
        lines.append(f"- command: `{result.command or 'not recorded'}`")
        lines.append(f"- date: {result.date or 'not recorded'}")
        lines.append(f"- machine: {_machine_line(result.machine)}")
        if result.settings:
            settings = ", ".join(f"{k}={_fmt(v)}" for k, v in result.settings.items())
            lines.append(f"- settings: {settings}")
        for note in result.notes:
            lines.append(f"- {_cell(note)}")
    return lines


def render(results: Sequence[Result], header_command: str = ".venv/bin/python -m bench") -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{header_command}` (`make bench`) from `bench/results/*.json`; do not edit "
        "by hand. Each benchmark's command, date, machine and settings are listed below the "
        "table. Ratios are ours/theirs from the same run; times are medians of repeats.",
        "",
    ]
    lines += render_table(results)
    lines += ["", "## How each row was produced"]
    lines += render_details(results)
    return "\n".join(lines) + "\n"


def write_report(results_dir: Path = RESULTS_DIR, out: Path = REPO_ROOT / "BENCHMARKS.md") -> Path:
    out.write_text(render(load_results(results_dir)))
    return out


if __name__ == "__main__":
    print(write_report())
