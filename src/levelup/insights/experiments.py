"""Holdout experiments: did what the holdout group was kept out of change the metric?

Who is in which group is the engine's pure draw (``engine.experiments.held_out``), so the groups here are
exactly those scoring used. The population is everyone with an event in the window; a participant's value
is the experiment's metric summed over the local days the window touches (0 without any). The difference of the
means (the rest minus the held out) comes with a 95% confidence interval by Welch's t (unequal variances,
Welch–Satterthwaite degrees of freedom); the difference is called real when the interval excludes zero.
No scipy: the t quantile is the Cornish–Fisher expansion around the normal one from 2 degrees of freedom
on (within 1% of the table), exact at 1 and 2, interpolated in 1/df between them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from levelup.engine.experiments import held_out, salt_of
from levelup.errors import FieldError, Invalid
from levelup.insights.segments import grain_rows
from levelup.metrics.periods import local_date
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Experiment
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

Z975 = 1.959963984540054  # the normal distribution's 97.5% quantile: a two-sided 95% interval
T1, T2 = 12.706204736174698, 4.302652729749464  # Student's t 97.5% quantiles at 1 and 2 degrees of freedom


def t_quantile(df: float) -> float:
    """Student's t 97.5% quantile for ``df`` degrees of freedom (Cornish–Fisher around the normal one)."""
    if df <= 1:
        return T1  # exact for one degree of freedom
    if df < 2:  # between the exact values at 1 and 2, linear in 1/df (the expansion is poor below 2)
        return T1 + (T2 - T1) * (1 - 1 / df) / 0.5
    z = Z975
    terms = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    )
    return z + sum(term / df ** (i + 1) for i, term in enumerate(terms))


def _spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample variance (n − 1)."""
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def welch(treated: Sequence[float], held: Sequence[float]) -> dict[str, Any] | None:
    """The difference of means (treated − held out) with its 95% interval; None below two in a group."""
    if len(treated) < 2 or len(held) < 2:
        return None
    (mean_a, var_a), (mean_b, var_b) = _spread(treated), _spread(held)
    part_a, part_b = var_a / len(treated), var_b / len(held)
    error = math.sqrt(part_a + part_b)
    difference = mean_a - mean_b
    if error == 0:
        return {"difference": difference, "low": difference, "high": difference, "df": None, "real": difference != 0}
    df = (part_a + part_b) ** 2 / (
        (part_a**2 / (len(treated) - 1) if part_a else 0) + (part_b**2 / (len(held) - 1) if part_b else 0)
    )
    half = t_quantile(df) * error
    low, high = difference - half, difference + half
    return {"difference": difference, "low": low, "high": high, "df": round(df, 2), "real": low > 0 or high < 0}


def _values(
    connection: Connection, program_id: int, metric: str, start: dt.datetime, end: dt.datetime, timezone: str
) -> dict[str, float]:
    """Everyone with an event in [start, end): the metric over the window's local days (0 without)."""
    e, p, m = t.events.c, t.participants.c, t.metric_totals.c
    active = connection.execute(
        select(p.id, p.external_id)
        .where(p.program_id == program_id)
        .where(
            select(e.seq).where(e.participant_id == p.id, e.occurred_at >= start, e.occurred_at < end).limit(1).exists()
        )
    ).all()
    first = local_date(start, timezone).isoformat()
    last = local_date(end - dt.timedelta(microseconds=1), timezone).isoformat()  # the day of the window's end
    sums = dict(
        connection.execute(
            select(m.subject_id, func.sum(m.value))
            .where(m.program_id == program_id, m.metric == metric, m.subject_kind == "p")
            .where(grain_rows(m.period, "day"), m.period >= first, m.period <= last)
            .group_by(m.subject_id)
        ).all()
    )
    return {external: float(sums.get(pid) or 0.0) for pid, external in active}


def _group(values: Sequence[float]) -> dict[str, Any]:
    return {"participants": len(values), "mean": round(sum(values) / len(values), 4) if values else None}


def _applies_to(experiment: Experiment) -> str:
    target = experiment.applies_to
    return f"rule {target.rule}" if target.rule else f"challenge {target.challenge}" if target.challenge else "program"


def _plain(value: float, sign: str = "") -> str:
    """A number as a sentence shows it: whole from 100 up (12,345), else four significant digits."""
    return f"{value:{sign},.0f}" if abs(value) >= 100 else f"{value:{sign},.4g}"


def compare_one(experiment: Experiment, values: dict[str, float]) -> dict[str, Any]:
    """One experiment's groups compared, with the sentence that says whether the difference is real."""
    held = [v for who, v in sorted(values.items()) if held_out(experiment, who)]
    treated = [v for who, v in sorted(values.items()) if not held_out(experiment, who)]
    result = welch(treated, held)
    what, metric = _applies_to(experiment), experiment.metric
    out: dict[str, Any] = {
        "key": experiment.key,
        "applies_to": what,
        "metric": metric,
        "holdout": experiment.holdout,
        "salt": salt_of(experiment),
        "treated": _group(treated),
        "held_out": _group(held),
        "confidence": 0.95,
        "method": "welch",
    }
    if result is None:
        out |= {"difference": None, "low": None, "high": None, "df": None, "real": None}
        out["sentence"] = (
            f"{experiment.key}: not enough participants to compare ({len(treated)} with {what}, {len(held)} held out; "
            "two in each group at least)"
        )
        return out
    out |= {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    verdict = (
        "the difference is real: the 95% interval excludes zero"
        if result["real"]
        else "it could be chance: the 95% interval includes zero"
    )
    out["sentence"] = (
        f"{experiment.key}: with {what}, participants averaged {_plain(out['treated']['mean'])} {metric}, held "
        f"out {_plain(out['held_out']['mean'])}: a difference of {_plain(result['difference'], '+')} "
        f"(95% CI {_plain(result['low'], '+')} to {_plain(result['high'], '+')}); {verdict}"
    )
    return out


def experiments(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    start: dt.datetime,
    end: dt.datetime,
    *,
    key: str | None = None,
) -> dict[str, Any]:
    """Every experiment of the document in force (or the one named), compared over [start, end)."""
    chosen = [e for e in compiled.doc.experiments if key is None or e.key == key]
    if key is not None and not chosen:
        raise Invalid(f"no experiment {key!r}", errors=[FieldError("experiment", "not an experiment of the program")])
    cache: dict[str, dict[str, float]] = {}
    found = []
    for experiment in chosen:
        if experiment.metric not in cache:
            cache[experiment.metric] = _values(connection, program.id, experiment.metric, start, end, compiled.timezone)
        found.append(compare_one(experiment, cache[experiment.metric]))
    real = sum(1 for f in found if f["real"])
    return {
        "window": {"from": start.isoformat(), "to": end.isoformat()},
        "experiments": found,
        "sentence": f"{real} of {len(found)} experiments show a real difference" if found else "no experiments",
    }
