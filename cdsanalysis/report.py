"""A regimes-and-CDS report of a run store: a JSON-ready dictionary and a plain-text table."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.aggregate import aggregate_label, final_accuracy_sentence
from cdsanalysis.cds import as_strings, json_number
from cdsanalysis.cds_curve import cds_curve, search_settings_differ
from cdsanalysis.cds_text import bracket_text, cds_summary, cds_warnings, curve_text
from cdsanalysis.data_warnings import regime_breakdown
from cdsanalysis.early_stops import early_stop_counts, early_stop_line, early_stop_warnings
from cdsanalysis.environments import environment_counts, environment_warnings
from cdsanalysis.notices import WARNINGS_KEY, merge_warnings, warning_lines, warnings_of
from cdsanalysis.regimes import MIXED, classify_data_sizes, classify_runs
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.survival import time_to_grok
from cdsanalysis.thresholds import resolve_thresholds

REPORT_KIND = "cds-regimes-report"
#: 2: one ``settings`` object replaces ``rules`` and ``bootstrap`` (and the settings inside
#: ``cds``).
#: 3: a top-level ``warnings`` list; a size's ``regime`` is ``"mixed"`` unless its done runs all
#: agree, with ``regime_counts`` per row; ``cds`` holds the grid ``bracket`` and the ``curve``
#: estimate (:func:`cdsanalysis.cds_text.cds_summary`); ``time_to_grok`` per size;
#: ``thresholds`` (the resolved eps, chance and ceiling) and ``window`` (in steps).
REPORT_VERSION = 3
#: Width of the wrapped settings lines of the text reports, in characters.
SETTINGS_WIDTH = 100

_STEP_VARIABLES = ("memorisation_step", "generalisation_step", "delay_steps")


def _jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python values; NaN -> None, inf -> "inf"."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    return json_number(value)


def _runs_rows(runs: xr.Dataset) -> list[dict[str, Any]]:
    rows = []
    for i in range(runs.sizes["run"]):
        row: dict[str, Any] = {
            "run": str(runs["run"].values[i]),
            "n_samples": int(runs["n_samples"].values[i]),
            "seed": int(runs["seed"].values[i]) if "seed" in runs.coords else None,
            "status": str(runs["status"].values[i]),
            "regime": str(runs["regime"].values[i]),
            # the curve the memorisation step came from (cdsanalysis.events)
            "memorisation_source": str(runs["memorisation_source"].values[i]),
        }
        for name in (*_STEP_VARIABLES, "final_test_accuracy"):
            row[name] = float(runs[name].values[i])
        rows.append(row)
    return rows


def _regime_counts(sizes: xr.Dataset, i: int) -> dict[str, int]:
    """Done runs per regime at size ``i``, most frequent first (ties: the order of
    :data:`~cdsanalysis.regimes.REGIMES`), regimes without a run left out."""
    names = as_strings(sizes["regime_name"].values)
    counts = sizes["regime_count"].values[i].tolist()
    pairs = sorted(zip(names, counts, strict=True), key=lambda kv: -kv[1])
    return {str(name): int(k) for name, k in pairs if k}


def time_to_grok_entry(grok: xr.Dataset, index: Any) -> dict[str, Any]:
    """The JSON object of one size (and threshold) of a :mod:`cdsanalysis.survival` result
    with the grok names (``index``: a position in its ``grok[...].values``)."""

    def get(name: str) -> Any:
        return grok[name].values[index].item()

    median = get("grok_median_steps")
    return {
        "median_steps": median,
        "median_low": get("grok_median_low"),
        "median_high": get("grok_median_high"),
        "median_censored": bool(np.isinf(median)),
        "followup_steps": get("followup_steps"),
        "n_runs": get("n_runs"),
        "n_grokked": get("n_grokked"),
        "grokked_fraction": get("grokked_fraction"),
        "grokked_fraction_low": get("grokked_fraction_low"),
        "grokked_fraction_high": get("grokked_fraction_high"),
    }


def _sizes_rows(sizes: xr.Dataset, grok: xr.Dataset) -> list[dict[str, Any]]:
    rows = []
    for i in range(sizes.sizes["n_samples"]):

        def get(name: str, i: int = i) -> Any:
            return sizes[name].values[i].item()

        row: dict[str, Any] = {
            "n_samples": int(sizes["n_samples"].values[i]),
            "n_runs": get("n_runs"),
            "n_done": get("n_done"),
            "regime": str(sizes["regime"].values[i]),
            "regime_counts": _regime_counts(sizes, i),
            "agreement": get("agreement"),
        }
        for name in _STEP_VARIABLES:
            row[name] = {s: get(f"{name}_{s}") for s in ("median", "min", "max", "reached")}
        row["final_test_accuracy"] = {
            "mean": get("final_test_accuracy_mean"),
            "low": get("final_test_accuracy_low"),
            "high": get("final_test_accuracy_high"),
            "n": get("final_test_accuracy_n"),
        }
        row["time_to_grok"] = time_to_grok_entry(grok, i)
        rows.append(row)
    return rows


def regimes_report(
    ds: xr.Dataset, settings: AnalysisSettings | None = None, **overrides: Any
) -> dict[str, Any]:
    """Classify the runs and data sizes of ``ds`` and estimate its CDS, as one dictionary.

    Parameters
    ----------
    ds
        A run store opened with :func:`cdsanalysis.open_runs`, holding one configuration
        swept over ``n_samples`` (and replicate coordinates in ``allow_varying``).
    settings, **overrides
        :class:`~cdsanalysis.settings.AnalysisSettings` (default: its defaults) and keyword
        changes of its fields: the regime rules, the CDS (same ``eps``, ``aggregate`` and
        ``last_k``) and the bootstrap shared by the CDS interval and the accuracy intervals per
        ``n``.

    Returns
    -------
    dict
        JSON-serialisable (NaN -> ``None``, infinities -> ``"inf"`` / ``"-inf"``): ``kind``,
        ``version``, ``store`` (grid name, run counts by status), ``settings``
        (:meth:`AnalysisSettings.to_dict`), ``thresholds`` (the resolved thresholds,
        :meth:`~cdsanalysis.thresholds.Thresholds.to_dict`), ``window`` (the reduction of each
        run's test curve, in words), ``cds`` (:meth:`CDSResult.to_dict` less its
        settings), ``data_sizes`` (one row per ``n``, see
        :func:`~cdsanalysis.regimes.classify_data_sizes`, with a ``time_to_grok`` object: the
        Kaplan-Meier median generalisation step with its interval and whether it is censored,
        ``followup_steps``, and the fraction of done runs that generalised with its binomial
        interval, see :mod:`cdsanalysis.survival`), ``runs`` (one row per run, see
        :func:`~cdsanalysis.regimes.classify_runs`), ``thresholds`` (the resolved eps, chance
        and ceiling), ``window`` (each run's reduction in words) and ``warnings`` (sentences,
        see :mod:`cdsanalysis.data_warnings`). Steps are in steps (store convention),
        accuracies are fractions, data sizes are in samples.
    """
    settings = AnalysisSettings.resolve(settings, **overrides)
    thresholds = resolve_thresholds(ds, settings)  # once, for the regimes and the CDS
    runs = classify_runs(ds, settings, thresholds=thresholds)
    sizes = classify_data_sizes(runs, settings)
    # The regimes are per n_samples, whatever the CDS's size coordinate.
    grok = time_to_grok(runs, settings.replace(size_coord="n_samples"))
    search_note = search_settings_differ(ds.attrs.get("search_json"), settings)
    # final_accuracy: already computed, so the store is read once.
    cds = cds_summary(
        cds_curve(ds, settings, final_accuracy=runs["final_test_accuracy"], thresholds=thresholds)
    )
    status = as_strings(ds["status"].values)
    names, counts = np.unique(status, return_counts=True)
    environments = environment_counts(ds)
    report = {
        "kind": REPORT_KIND,
        "version": REPORT_VERSION,
        "store": {
            "grid_name": ds.attrs.get("grid_name"),
            "n_runs": int(ds.sizes["run"]),
            "status_counts": dict(zip(names.tolist(), counts.tolist(), strict=True)),
            "stop_reason_counts": early_stop_counts(ds),
            "environments": environments,
        },
        "settings": settings.to_dict(),
        "thresholds": thresholds.to_dict(),
        "window": runs.attrs["window"],
        "cds": cds,
        "data_sizes": _sizes_rows(sizes, grok),
        "runs": _runs_rows(runs),
        WARNINGS_KEY: merge_warnings(
            warnings_of(sizes),
            cds_warnings(cds),
            early_stop_warnings(ds, runs["regime"].values),
            [search_note] if search_note else [],
            environment_warnings(environments),
        ),
    }
    return _jsonable(report)


# -- plain-text rendering -----------------------------------------------------------------------


def _num(value: Any) -> float:
    """A report number back to float (None -> NaN, "inf" -> inf)."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return float(value)
    return float(value)


def _fmt_step(value: Any) -> str:
    v = _num(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.0f}" if v == round(v) else f"{v:.1f}"


def _fmt_n(value: Any) -> str:
    v = _num(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:.0f}" if v == round(v) else f"{v:g}"


def _fmt_acc(value: Any) -> str:
    v = _num(value)
    return "-" if math.isnan(v) else f"{v:.3f}"


def _step_cell(stats: dict[str, Any], n_done: int) -> str:
    reached = int(stats["reached"])
    if reached == 0:
        return f"- ({reached}/{n_done})"
    low, high = _fmt_step(stats["min"]), _fmt_step(stats["max"])
    return f"{_fmt_step(stats['median'])} [{low}-{high}] ({reached}/{n_done})"


def time_to_grok_cell(entry: dict[str, Any]) -> str:
    """``median [low, high]`` of a :func:`time_to_grok_entry`; ``> followup [low, high]`` when
    the median is censored (not reached within the steps observed); ``-`` without done runs.
    An undefined bound is ``-``, an open one ``inf``."""
    if int(entry["n_runs"]) == 0:
        return "-"
    bounds = f"[{_fmt_step(entry['median_low'])}, {_fmt_step(entry['median_high'])}]"
    if entry["median_censored"]:
        return f"> {_fmt_step(entry['followup_steps'])} {bounds}"
    return f"{_fmt_step(entry['median_steps'])} {bounds}"


def grokked_cell(entry: dict[str, Any]) -> str:
    """``k/N [low, high]``: runs that generalised, with the binomial interval of the fraction."""
    counts = f"{entry['n_grokked']}/{entry['n_runs']}"
    if int(entry["n_runs"]) == 0:
        return counts
    low, high = _fmt_acc(entry["grokked_fraction_low"]), _fmt_acc(entry["grokked_fraction_high"])
    return f"{counts} [{low}, {high}]"


def regime_cell(row: dict[str, Any]) -> str:
    """A size's regime as the regimes table prints it: ``"sufficiency (3/3)"`` (agreeing/done
    runs), ``"mixed: 1/2 insufficiency, 1/2 undetermined"``, or the bare regime without done
    runs (``row``: a ``data_sizes`` row of :func:`regimes_report`)."""
    n_done = int(row["n_done"])
    if n_done == 0:
        return str(row["regime"])
    if row["regime"] == MIXED:
        return f"{MIXED}: {regime_breakdown(row['regime_counts'])}"
    agree = int(round(_num(row["agreement"]) * n_done))
    return f"{row['regime']} ({agree}/{n_done})"


def _acc_cell(acc: dict[str, Any]) -> str:
    if acc["mean"] is None:
        return "-"
    return f"{_fmt_acc(acc['mean'])} [{_fmt_acc(acc['low'])}, {_fmt_acc(acc['high'])}]"


def _eps(report: dict[str, Any]) -> float:
    """The absolute eps the report used (reports before version 3: the setting)."""
    return float(report.get("thresholds", report["settings"])["eps"])


def _window(report: dict[str, Any]) -> str:
    """Each run's reduction of its test curve, in words (``median of the last 100 steps``)."""
    settings = report["settings"]
    return report.get("window") or aggregate_label(settings["aggregate"], settings.get("last_k"))


def _accuracy(report: dict[str, Any]) -> str:
    """The run's final test accuracy (its reduction is stated on a line of its own)."""
    return "maximum test accuracy" if _window(report) == "maximum" else "final test accuracy"


def _eps_text(report: dict[str, Any]) -> str:
    eps = _eps(report)
    return f"{eps:.2f}" if round(eps, 2) == eps else f"{eps:.4g}"


def _cds_lines(report: dict[str, Any]) -> list[str]:
    cds, settings = report["cds"], report["settings"]
    variant = ", every larger n passing too" if settings["require_all_larger"] else ""
    head = f"CDS (eps={_eps_text(report)}, mean {_accuracy(report)}{variant}"
    confidence, resamples = settings["confidence"], settings["n_resamples"]
    return [
        f"{head}, {cds['n_runs']} runs)",
        f"  grid bracket: {bracket_text(cds['bracket'], confidence, resamples)}",
        f"  curve estimate: {curve_text(cds['curve'], confidence)}",
    ]


def _rules_line(report: dict[str, Any]) -> str:
    r = report["settings"]
    return (
        f"Rules: memorised = train accuracy >= {r['memorisation_threshold']:g}; "
        f"generalised = {_accuracy(report)} >= {_eps(report):.4g}; "
        f"sufficiency if generalisation step > {r['surplus_max_delay_ratio']:g} x memorisation "
        "step, else surplus; only 'done' runs are classified."
    )


def regimes_table(report: dict[str, Any]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The regimes table of a :func:`regimes_report`: headers (name, sub-heading) and one row
    of cells per data size (see :func:`render_regimes_table`; the HTML report uses the same)."""
    confidence = report["settings"]["confidence"]
    headers = [
        ("n", ""),
        ("runs", "done/all"),
        ("regime", "(agreeing/done)"),
        ("memorisation step", "median [min-max] (reached)"),
        ("generalisation step", "median [min-max] (reached)"),
        ("final test accuracy", f"mean [{confidence:.0%} interval]"),
        ("time to grok (KM)", f"median [{confidence:.0%} interval]"),
        ("grokked", f"k/N [{confidence:.0%} {report['settings']['fraction_ci_method']}]"),
    ]
    rows = []
    for row in report["data_sizes"]:
        rows.append(
            [
                _fmt_n(row["n_samples"]),
                f"{row['n_done']}/{row['n_runs']}",
                regime_cell(row),
                _step_cell(row["memorisation_step"], int(row["n_done"])),
                _step_cell(row["generalisation_step"], int(row["n_done"])),
                _acc_cell(row["final_test_accuracy"]),
                time_to_grok_cell(row["time_to_grok"]),
                grokked_cell(row["time_to_grok"]),
            ]
        )
    return headers, rows


def explanation_lines(report: dict[str, Any], *, warnings: bool = True) -> list[str]:
    """What a regimes table means, one statement a line: the CDS (grid bracket, curve
    estimate), the rules, the window, the thresholds, the settings and (``warnings``) the
    warnings, left out by a caller that lists them elsewhere."""
    out = list(_cds_lines(report))
    early = early_stop_line(report["store"].get("stop_reason_counts", {}))
    if early:
        out.append(early)
    out += [_rules_line(report), final_accuracy_sentence(_window(report))]
    if "thresholds" in report:
        out.append(f"Thresholds: {report['thresholds']['text']}")
    out.extend(settings_lines(report["settings"]))
    if warnings:
        out.extend(warning_lines(report.get(WARNINGS_KEY, [])))
    return out


def render_regimes_table(report: dict[str, Any]) -> str:
    """Render a :func:`regimes_report` dictionary as an aligned plain-text table.

    One row per data size ``n``: runs (done/all), regime (agreeing/done runs; for a mixed size
    the breakdown, "mixed: 1/2 insufficiency, 1/2 undetermined"), memorisation and
    generalisation steps as median [min-max] (reached/done), the mean final test accuracy
    with its bootstrap interval, the Kaplan-Meier median generalisation step with its
    interval (``> S`` when censored: not reached within the S steps observed) and the runs
    that generalised (k/N with a binomial interval of the fraction). Below the table: the
    CDS lines (grid bracket, curve estimate), the rules in words, every setting used, and
    one ``Warning: ...`` line per warning. Works on the dictionary after a
    ``json.dumps``/``json.loads`` round trip as well.
    """
    headers, rows = regimes_table(report)
    widths = [max(len(h[0]), len(h[1]), *(len(r[j]) for r in rows)) for j, h in enumerate(headers)]
    right = {0, 1}  # numeric columns

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if j in right else c.ljust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [
        line([h[0] for h in headers]),
        line([h[1] for h in headers]),
        "  ".join("-" * w for w in widths),
    ]
    out.extend(line(r) for r in rows)
    if not rows:
        out.append("(no runs)")
    out.append("")
    out.extend(explanation_lines(report))
    return "\n".join(out) + "\n"


def settings_lines(values: Mapping[str, Any], title: str = "Settings") -> list[str]:
    """``Settings: eps=0.9, aggregate=median_last, ...``, wrapped at :data:`SETTINGS_WIDTH`
    characters (continuation lines indented): the settings a text report was made with."""
    text = ", ".join(f"{k}={_fmt_setting(v)}" for k, v in values.items())
    return textwrap.wrap(
        f"{title}: {text}",
        SETTINGS_WIDTH,
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _fmt_setting(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_fmt_setting(v) for v in value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
