"""``cds-analyze``: validate run stores; report regimes, CDS, decay fits and forecasts, step-wise
events; plot."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import typer
from rich.console import Console

# Only light modules at the top (``cds-analyze --help`` must not load xarray, zarr, scipy,
# statsmodels or matplotlib: tests/cdsanalysis/test_cli.py checks it). Each command imports the
# analysis modules it uses in its body.
from cdsanalysis.method_settings import (
    DEFAULT_BY,
    DEFAULT_DECAY,
    DEFAULT_FORECAST,
    DEFAULT_LAW,
    DEFAULT_METRIC,
    DEFAULT_THRESHOLDS,
    DecaySettings,
    DelayLawSettings,
    ForecastSettings,
)
from cdsanalysis.notices import (
    WARNINGS_KEY,
    add_warning,
    warning_lines,
    warnings_of,
)
from cdsanalysis.plots.kinds import KINDS
from cdsanalysis.settings import DEFAULTS, AnalysisSettings, SettingsBase
from schemas.run_names import resolve_run, shown_id

if TYPE_CHECKING:
    import xarray as xr

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
err = Console(stderr=True, markup=False, highlight=False)

StoreArg = Annotated[str, typer.Argument(help="path or URL of a run store written by cds-run")]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="print JSON instead: {command, settings, warnings, result}"),
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="also write the result to this file")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}")
    return typer.Exit(code)


def select_runs(ds: xr.Dataset, where: list[str]) -> xr.Dataset:
    """Keep the runs whose coordinates match every ``KEY=VALUE`` in ``where``."""
    for clause in where:
        key, sep, text = clause.partition("=")
        if not sep or key not in ds.coords or ds[key].dims != ("run",):
            per_run = sorted(str(k) for k, c in ds.coords.items() if c.dims == ("run",))
            raise _fail(f"--where {clause!r}: expected KEY=VALUE with KEY one of {per_run}")
        values = ds[key].values
        wanted = type(values[0].item() if hasattr(values[0], "item") else values[0])(text)
        ds = ds.isel(run=np.flatnonzero(values == wanted))
        if ds.sizes["run"] == 0:
            raise _fail(f"--where {clause!r} matches no run")
    return ds


# -- output: a text report, or with --json the one JSON envelope -------------------------------

#: The keys of every ``--json`` output, in order (README "JSON output").
ENVELOPE_KEYS = ("command", "settings", "warnings", "result")
#: The section of ``settings`` each settings object of a command is echoed under.
_SECTIONS = {
    "settings": "analysis",
    "decay_settings": "decay",
    "law_settings": "delay_law",
    "forecast_settings": "forecast",
}


@dataclasses.dataclass
class Outcome:
    """What a command found: ``text`` is printed, or with ``--json`` the envelope holding
    ``result`` and ``warnings``; ``exit_code`` != 0 sends the text to stderr and exits with it;
    ``out`` (a path) also gets what is printed."""

    result: Any
    text: str
    warnings: list[str] = dataclasses.field(default_factory=list)
    exit_code: int = 0
    out: Path | None = None


def _echo(value: Any) -> Any:
    """An option's value as JSON: settings objects as their fields, paths as text."""
    if isinstance(value, SettingsBase):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_echo(v) for v in value]
    return value


def envelope(command: str, options: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The JSON of every command (:data:`ENVELOPE_KEYS`): the command's name, every option it
    was called with (``settings``; each settings object as a section of its fields, e.g.
    ``analysis``, ``decay``), the warnings, and the result."""
    settings = {_SECTIONS.get(k, k): _echo(v) for k, v in options.items()}
    return dict(
        zip(ENVELOPE_KEYS, (command, settings, outcome.warnings, outcome.result), strict=True)
    )


def json_envelope(command: Callable) -> Callable:
    """Give ``command(**options) -> Outcome`` the ``--json`` option and print its outcome: the
    text, or :func:`envelope` (the one place the JSON of ``cds-analyze`` is made). The
    command's name is its function's, without a ``_command`` suffix."""
    name = command.__name__.removesuffix("_command")
    signature = _signature(command)

    @functools.wraps(command)
    def run(as_json: bool = False, **options: Any) -> None:
        outcome = command(**options)
        text = json.dumps(envelope(name, options, outcome), indent=2) if as_json else outcome.text
        print(text, file=sys.stderr if outcome.exit_code and not as_json else sys.stdout)
        if outcome.out is not None:
            outcome.out.write_text(text + "\n")
        if outcome.exit_code:
            raise typer.Exit(outcome.exit_code)

    keyword = inspect.Parameter.KEYWORD_ONLY
    as_json = inspect.Parameter("as_json", keyword, default=False, annotation=JsonOpt)
    return _with_parameters(run, signature, [*signature.parameters.values(), as_json])


def _signature(command: Callable, drop: Sequence[str] = ()) -> inspect.Signature:
    """``command``'s signature without the parameters ``drop`` and without a return
    annotation, the annotations of the others evaluated (those dropped may name modules
    imported only for type checking, such as ``xr.Dataset``)."""
    signature = inspect.signature(command)
    namespace = getattr(inspect.unwrap(command), "__globals__", {})
    params = [
        p.replace(annotation=eval(p.annotation, namespace))  # noqa: S307 (our own annotations)
        if isinstance(p.annotation, str)
        else p
        for p in signature.parameters.values()
        if p.name not in drop
    ]
    return signature.replace(parameters=params, return_annotation=inspect.Signature.empty)


def _with_parameters(
    run: Callable, signature: inspect.Signature, parameters: list[inspect.Parameter]
) -> Callable:
    """``run`` (a wrapper) presented to typer with ``parameters``: its signature and its
    annotations (typer reads both; those copied by ``functools.wraps`` are the wrapped
    function's)."""
    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


@app.command()
@json_envelope
def validate(
    store: StoreArg,
    deep: Annotated[
        bool, typer.Option("--deep", help="also read every metric to check NaN conventions")
    ] = False,
) -> Outcome:
    """Check a store against its schema; exit 1 naming every problem found."""
    from cdsanalysis.validate import StoreValidationError, run_failures, validate_store

    notes: list[str] = []
    try:
        attrs = validate_store(store, deep=deep, notes=notes)
    except StoreValidationError as exc:
        result = {"store": store, "valid": False, "problems": exc.problems}
        return Outcome(result, str(exc), exit_code=1)
    failures = run_failures(store)
    result = {
        "store": store,
        "valid": True,
        "schema_version": attrs["schema_version"],
        "failed_runs": failures,
        "notes": notes,
    }
    lines = [f"{store}: valid cds run store (schema v{attrs['schema_version']})"]
    lines += [f"Note: {note}" for note in notes]
    for run in failures:
        why = run["failure"].rstrip() or "(no reason recorded: written before cds kept it)"
        lines.append(f"\nrun {shown_id(run['run'])} (index {run['index']}) {run['status']}:\n{why}")
    return Outcome(result, "\n".join(lines))


# -- the settings as options ---------------------------------------------------------------

#: Options whose name is not the field's (kept from earlier releases).
_OPTION_NAMES = {"n_resamples": "--resamples"}
_BOOTSTRAP = ("n_resamples", "confidence", "seed")
_EVENTS = ("smoothing", "smoothing_width", "sustain")
_SURVIVAL = ("km_ci_method", "fraction_ci_method")
#: The threshold (absolute, or relative to chance and ceiling) and the reduction of a run's test
#: curve with its window (an estimated ceiling is a mean of such reductions).
_THRESHOLDS = ("eps", "eps_relative", "chance_accuracy", "ceiling_accuracy")
_WINDOW = ("aggregate", "last_steps", "last_steps_fraction", "last_k")
#: The AnalysisSettings fields each command offers as options.
REGIMES_OPTIONS = (
    *(*_THRESHOLDS, "memorisation_threshold", "minibatch_sustain", *_WINDOW, *_EVENTS),
    *("surplus_max_delay_ratio", "surplus_max_delay_steps", "require_all_larger"),
    *("curve_sizes_per_side", "curve_links", "curve_variance", "allow_varying"),
    *(*_BOOTSTRAP, *_SURVIVAL),
)
CDS_OPTIONS = (
    *(*_THRESHOLDS, *_WINDOW, "size_coord", "curve_sizes_per_side", "curve_links"),
    "curve_variance",
    *("require_all_larger", "allow_varying", *_BOOTSTRAP),
)
DECAY_OPTIONS = (
    *(*_THRESHOLDS, "memorisation_threshold", "minibatch_sustain", *_WINDOW, *_BOOTSTRAP),
    "logit_scale",
)
FORECAST_OPTIONS = (
    *(*_THRESHOLDS, "memorisation_threshold", "minibatch_sustain", *_WINDOW, *_EVENTS),
    *("surplus_max_delay_ratio", "surplus_max_delay_steps", "size_coord", *_BOOTSTRAP),
    "fraction_ci_method",
    "logit_scale",
)
STEPWISE_OPTIONS = (*_EVENTS, "chance_accuracy", "size_coord", *_BOOTSTRAP, *_SURVIVAL)


def _cli_type(hint: Any) -> Any:
    """The type typer parses a settings field as (choices and tuples are validated by the
    settings class itself)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return str
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        base = _cli_type(rest[0]) if len(rest) == 1 else str  # e.g. "auto" or "START:END"
        return base | None if len(rest) < len(args) else base
    if origin is tuple:
        return list[str]
    return hint


def _plain(doc: str) -> str:
    """Docstring text without its reST markup (for ``--help``)."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", doc).replace("``", "")


def settings_options(cls: type, names: Sequence[str], param: str = "settings") -> Callable:
    """Give a command one option per field ``names`` of the settings class ``cls`` (default
    and help text from the class, so both are stated once) and call it with ``param=`` the
    settings object built from them; an invalid value exits 2 naming the field."""
    hints = typing.get_type_hints(cls)
    docs = cls.field_docs()  # type: ignore[attr-defined]
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}

    def option(name: str) -> inspect.Parameter:
        default = defaults[name]
        flag = _OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
        # The first sentence of the field's documentation (typer adds the default).
        help_text = re.split(r"(?<=[\w)\]])\.\s+(?=[A-Z])", _plain(docs[name]))[0]
        return inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=list(default) if isinstance(default, tuple) else default,
            annotation=Annotated[_cli_type(hints[name]), typer.Option(flag, help=help_text)],
        )

    def wrap(command: Callable) -> Callable:
        signature = _signature(command)

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            try:
                built = cls(**{name: kwargs.pop(name) for name in names})
            except ValueError as exc:
                raise _fail(str(exc)) from None
            return command(**kwargs, **{param: built})

        kept = [p for p in signature.parameters.values() if p.name != param]
        return _with_parameters(run, signature, [*kept, *(option(name) for name in names)])

    return wrap


# -- the analysis commands --------------------------------------------------------------------

WhereOpt = Annotated[list[str] | None, typer.Option(help="keep runs with KEY=VALUE (repeatable)")]
#: Said after an error of an analysis that pools runs of one configuration.
ONE_CONFIGURATION = "\n(select one configuration with --where KEY=VALUE)"


def _open(store: str, where: list[str] | None) -> xr.Dataset:
    from cdsanalysis.store import open_runs
    from cdsanalysis.validate import StoreValidationError

    try:
        return select_runs(open_runs(store), where or [])
    except StoreValidationError as exc:
        raise _fail(str(exc)) from None


#: How an option that names a run reads its value (:mod:`schemas.run_names`).
RUN_HELP = "its run id or a unique id prefix (a run index is still accepted)"


def _run_index(ds: xr.Dataset, text: str) -> int:
    """The position in ``ds`` of the run ``text`` names (:data:`RUN_HELP`); exit 2 if none."""
    try:
        return resolve_run(text, ds["run"].values)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def analysis_command(hint: str = "") -> Callable:
    """Make ``command(ds, [store], **options) -> (json_value, text)`` a command on a store:
    it adds the store argument and the ``--where``, ``--json`` (:func:`json_envelope`) and
    ``--out`` options, opens and selects the runs, prints (and writes) the text or the JSON
    envelope (a dict result's ``warnings`` move to the envelope's), and exits 2 with the
    message (and ``hint``) of a :class:`ValueError`."""

    def wrap(command: Callable) -> Callable:
        signature = _signature(command, drop=("ds", "store"))
        wants_store = "store" in inspect.signature(command).parameters

        @functools.wraps(command)
        def run(
            store: str, where: list[str] | None = None, out: Path | None = None, **options: Any
        ) -> Outcome:
            ds = _open(store, where)
            try:
                data, text = command(ds, **options, **({"store": store} if wants_store else {}))
            except ValueError as exc:
                raise _fail(f"{exc}{hint}") from None
            found = data.pop(WARNINGS_KEY, []) if isinstance(data, dict) else []
            return Outcome(data, text, warnings=found, out=out)

        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        parameters = [
            inspect.Parameter("store", keyword, annotation=StoreArg),
            *signature.parameters.values(),
            inspect.Parameter("where", keyword, default=None, annotation=WhereOpt),
            inspect.Parameter("out", keyword, default=None, annotation=OutOpt),
        ]
        return json_envelope(_with_parameters(run, signature, parameters))

    return wrap


def _settings_text(attrs: dict[str, Any]) -> str:
    """The settings a result echoes in its ``attrs``, as the last lines of a text report."""
    from cdsanalysis.report import settings_lines

    return "\n".join(settings_lines(AnalysisSettings.from_attrs(attrs).to_dict()))


def _thresholds_text(attrs: dict[str, Any]) -> str:
    """``Thresholds: eps = ...`` and ``Final test accuracy: ...`` lines of a result's attrs."""
    from cdsanalysis.aggregate import final_accuracy_sentence

    lines = []
    if isinstance(attrs.get("thresholds_text"), str):
        lines.append(f"Thresholds: {attrs['thresholds_text']}")
    if isinstance(attrs.get("window"), str):
        lines.append(final_accuracy_sentence(attrs["window"]))
    return "".join(f"\n{line}" for line in lines)


def _warnings_text(attrs: dict[str, Any]) -> str:
    """The ``Warning: ...`` lines that end a text report (empty without warnings)."""
    return "".join(f"\n{line}" for line in warning_lines(warnings_of(attrs)))


def _with_notes(data: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """A JSON result with its ``warnings`` (and resolved thresholds) at the top level."""
    from cdsanalysis.thresholds import Thresholds

    thresholds = Thresholds.from_attrs(attrs)
    if thresholds is not None:
        data["thresholds"] = thresholds.to_dict()
    data[WARNINGS_KEY] = warnings_of(attrs)
    return data


@app.command()
@settings_options(AnalysisSettings, REGIMES_OPTIONS)
@analysis_command(hint=ONE_CONFIGURATION)
def regimes(ds: xr.Dataset, store: str, settings: AnalysisSettings = DEFAULTS) -> tuple[Any, str]:
    """Regime of every data size, with memorisation/generalisation steps and the CDS."""
    from cdsanalysis.report import regimes_report, render_regimes_table

    report = regimes_report(ds, settings)
    report["store"]["location"] = store
    return report, render_regimes_table(report)


@app.command()
@settings_options(AnalysisSettings, CDS_OPTIONS)
@analysis_command(hint=ONE_CONFIGURATION)
def cds(
    ds: xr.Dataset,
    by: Annotated[
        str | None, typer.Option(help="model coordinate (width, depth): CDS per model + trend")
    ] = None,
    settings: AnalysisSettings = DEFAULTS,
) -> tuple[Any, str]:
    """CDS as a grid bracket and as a local curve estimate with its interval; censored outside
    the tested sizes."""
    from cdsanalysis.cds_curve import cds_curve
    from cdsanalysis.cds_text import (
        bracket_cell,
        bracket_text,
        cds_summary,
        curve_cell,
        curve_text,
        model_row,
    )
    from cdsanalysis.modelwise import cds_by_model
    from cdsanalysis.tables import dataset_to_json, fmt, interval, render_table

    result = cds_by_model(ds, by, settings) if by else cds_curve(ds, settings)
    data = _with_notes(
        dataset_to_json(result.drop_dims("size_grid", errors="ignore")), result.attrs
    )
    eps = float(result.attrs["thresholds_eps"])
    conf = f"{settings.confidence:.0%}"
    size_coord = settings.size_coord
    if by:
        rows = []
        for j, v in enumerate(result[by].values):
            row = model_row(result, by, j)
            rows.append([fmt(v), curve_cell(row), bracket_cell(row), fmt(row["n_runs"])])
        headers = [by, f"CDS curve [{conf}]", "grid bracket (resample share)", "runs"]
        text = render_table(headers, rows)
        text += (
            f"\n\ntrend: d log CDS / d log {by} = {interval(result, 'trend_slope')}, "
            f"p = {fmt(result['trend_p_value'], 2)} ({fmt(result['trend_n_models'])} models)"
        )
    else:
        rows = [
            [
                fmt(v),
                interval(result, "mean_accuracy", i),
                fmt(result["n_runs"].values[i]),
                f"{float(result['bracket_fraction'].values[i]):.0%}",
            ]
            for i, v in enumerate(result[size_coord].values)
        ]
        headers = [size_coord, f"mean accuracy [{conf}]", "runs", "bracket ends here"]
        text = render_table(headers, rows)
        summary = cds_summary(result)
        text += (
            f"\n\nCDS (eps={eps:.4g}, {summary['n_runs']} runs)"
            f"\n  grid bracket: "
            f"{bracket_text(summary['bracket'], settings.confidence, settings.n_resamples)}"
            f"\n  curve estimate: {curve_text(summary['curve'], settings.confidence)}"
        )
    notes = _thresholds_text(result.attrs)
    return data, f"{text}{notes}\n{_settings_text(result.attrs)}{_warnings_text(result.attrs)}"


LawOpt = Annotated[
    bool,
    typer.Option(
        "--law",
        help="the delay law across the grid instead: T_gen - T_mem against "
        "log(w_mem / w_gen) / gamma, over every finished run (cdsanalysis.delay_law)",
    ),
]


@app.command()
@settings_options(DelayLawSettings, DelayLawSettings.field_names(), param="law_settings")
@settings_options(DecaySettings, DecaySettings.field_names(), param="decay_settings")
@settings_options(AnalysisSettings, DECAY_OPTIONS)
@analysis_command()
def decay(
    ds: xr.Dataset,
    law: LawOpt = False,
    settings: AnalysisSettings = DEFAULTS,
    decay_settings: DecaySettings = DEFAULT_DECAY,
    law_settings: DelayLawSettings = DEFAULT_LAW,
) -> tuple[Any, str]:
    """Fit ||w(t)|| = w0 exp(-gamma t) per run: gamma, gamma/(lr*wd), predicted generalisation;
    with --law, the delay law T_gen - T_mem = a + b log(w_mem / w_gen) / gamma across runs."""
    from cdsanalysis.data_warnings import FITTED_NOT_POOLED, store_warnings
    from cdsanalysis.decay import fit_decay
    from cdsanalysis.report import settings_lines
    from cdsanalysis.tables import dataset_to_json, fmt, interval, render_table

    if law:
        return _delay_law_report(ds, settings, decay_settings, law_settings)
    res = fit_decay(ds, settings, decay_settings)
    # fit_decay fits every run, finished or not (on the steps written so far), and pools only
    # the finished ones; its own unfinished-runs warning has this same sentence.
    for warning in store_warnings(ds, settings, fate=FITTED_NOT_POOLED):
        add_warning(res.attrs, warning)
    conf = f"{settings.confidence:.0%}"
    rows = []
    for i in range(res.sizes["run"]):
        size = res["n_samples"].values[i] if "n_samples" in res.coords else "-"
        seed_i = res["seed"].values[i] if "seed" in res.coords else "-"
        rows.append(
            [
                shown_id(res["run"].values[i]),
                fmt(size),
                fmt(seed_i),
                f"{fmt(res['window_start_step'].values[i])}-{fmt(res['window_end_step'].values[i])}",
                interval(res, "gamma", i),
                interval(res, "gamma_over_lr_wd", i),
                fmt(res["predicted_generalisation_step"].values[i], 4),
                fmt(res["observed_generalisation_step"].values[i]),
                str(res["fit_status"].values[i]),
                "yes" if res["pooled"].values[i] else f"no: {res['run_status'].values[i]}",
            ]
        )
    text = render_table(
        [
            "run",
            "n",
            "seed",
            "window",
            f"gamma /step [{conf}]",
            f"gamma/(lr*wd) [{conf}]",
            "predicted gen",
            "observed gen",
            "fit",
            "pooled",
        ],
        rows,
    )
    decay_echo = {k[len("decay_") :]: v for k, v in res.attrs.items() if k.startswith("decay_")}
    method = {"hksj": "Hartung-Knapp-Sidik-Jonkman", "dl": "DerSimonian-Laird"}
    text += (
        f"\n\nwindow: {_window_rule_text(decay_settings)}"
        f"\npooled over {fmt(res['n_pooled'])} finished runs ({fmt(res['n_fitted'])} fitted):"
        f" mean rate gamma = {interval(res, 'gamma_mean')} per step (between-run sd"
        f" {fmt(res['gamma_tau'])}), gamma/(lr*wd) = {interval(res, 'ratio_mean')}"
        f"\n  ({conf} random-effects interval on the mean rate, "
        f"{method[decay_settings.pool_method]}: each run's own standard error plus the"
        " run-to-run spread)"
        f"{_thresholds_text(res.attrs)}"
        f"\n{_settings_text(res.attrs)}\n"
        + "\n".join(settings_lines(DecaySettings.from_attrs(decay_echo).to_dict(), "Decay"))
        + _warnings_text(res.attrs)
    )
    return _with_notes(dataset_to_json(res), res.attrs), text


@app.command("forecast")
@settings_options(ForecastSettings, ForecastSettings.field_names(), param="forecast_settings")
@settings_options(AnalysisSettings, FORECAST_OPTIONS)
@analysis_command()
def forecast_command(
    ds: xr.Dataset,
    settings: AnalysisSettings = DEFAULTS,
    forecast_settings: ForecastSettings = DEFAULT_FORECAST,
) -> tuple[Any, str]:
    """Forecast each run's generalisation step from its memorisation step, its norm and a w*
    learned from other runs (not circular); score the forecasts against the observed steps."""
    from cdsanalysis.forecast import NOT_FORECAST, OUTCOMES, forecast
    from cdsanalysis.report import settings_lines
    from cdsanalysis.tables import dataset_to_json, fmt, interval, render_table

    res = forecast(ds, settings, forecast_settings)
    fs = forecast_settings
    conf = f"{settings.confidence:.0%}"
    rows = []
    for i in range(res.sizes["run"]):
        size = res[settings.size_coord].values[i] if settings.size_coord in res.coords else "-"
        seed_i = res["seed"].values[i] if "seed" in res.coords else "-"
        right = res["right"].values[i]
        rel = res["relative_error"].values[i]
        rows.append(
            [
                shown_id(res["run"].values[i]),
                fmt(size),
                fmt(seed_i),
                fmt(res["memorisation_step"].values[i]),
                fmt(res["gamma"].values[i]),
                fmt(res["forecast_step"].values[i], 4),
                fmt(res["observed_generalisation_step"].values[i]),
                f"{rel:+.1%}" if np.isfinite(rel) else "-",
                "-" if not np.isfinite(right) else ("yes" if right else "no"),
                str(res["outcome"].values[i])
                or f"not forecast: {res['forecast_status'].values[i]}",
            ]
        )
    headers = [
        "run",
        settings.size_coord,
        "seed",
        "T_mem",
        "gamma /step",
        "forecast",
        "observed",
        "rel error",
        "right",
        "outcome",
    ]
    n_gen, n_scored = int(res["n_scored_generalised"]), int(res["n_scored"])
    outcome_count = dict(zip(OUTCOMES, res["n_outcome"].values.tolist(), strict=True))
    early = outcome_count[OUTCOMES[2]]
    missing = [
        f"{r}: {int(k)}"
        for r, k in zip(NOT_FORECAST, res["n_not_forecast"].values, strict=True)
        if k
    ]
    text = render_table(headers, rows) + (
        f"\n\nForecast at memorisation + {fs.gamma_window_steps} steps: T = anchor "
        f"({fs.anchor}) + log(w_anchor / w*) / gamma (gamma: {fs.gamma_source}), w* learned "
        f"({fs.w_star_rule}) by {fs.calibration}; clock: {fs.clock} "
        f"(w = {res.attrs['clock_variable']})"
        f"\n{n_scored} of {int(res.attrs['n_runs_in_store'])} runs scored "
        f"({n_gen} generalised, {int(res['n_censored_scored'])} censored); not scored: "
        f"{OUTCOMES[2]}: {early}; not forecast: {', '.join(missing) or 'none'}"
        f"\n  median |relative error| = {interval(res, 'median_abs_relative_error')} "
        f"({conf} bootstrap over runs, {settings.n_resamples} resamples; {n_gen} generalised runs)"
        f"\n  within {fs.tolerance_fraction:.0%}: {int(res['n_right'])}/{n_scored} = "
        f"{interval(res, 'fraction_right')} ({conf} {settings.fraction_ci_method}; "
        f"{int(res['n_censored_scored'])} censored runs scored, "
        f"{int(res['n_censored_right'])} right: forecast beyond their last step)"
        f"{_thresholds_text(res.attrs)}"
        f"\n{_settings_text(res.attrs)}\n"
        + "\n".join(settings_lines(fs.to_dict(), "Forecast"))
        + _warnings_text(res.attrs)
    )
    return _with_notes(dataset_to_json(res), res.attrs), text


def _window_rule_text(decay: DecaySettings) -> str:
    if decay.window != "auto":
        return f"fixed, steps {decay.window[0]}-{decay.window[1]}"
    if decay.auto_start == "memorisation":
        return "memorisation step -> generalisation step (or last step)"
    return "peak of the norm after memorisation -> generalisation step (or last step)"


def _delay_law_report(
    ds: xr.Dataset,
    settings: AnalysisSettings,
    decay_settings: DecaySettings,
    law_settings: DelayLawSettings,
) -> tuple[Any, str]:
    """``decay --law``: the delay-law regression as JSON and as text."""
    from cdsanalysis.delay_law import REASONS, delay_law
    from cdsanalysis.report import settings_lines
    from cdsanalysis.tables import dataset_to_json, fmt, interval, render_table

    fitted_gamma = law_settings.gamma_source == "fitted"
    res = delay_law(ds, settings, law_settings, decay_settings if fitted_gamma else None)
    conf = f"{settings.confidence:.0%}"
    rows = []
    coords = [c for c in (settings.size_coord, "seed") if c in res.coords]  # beside the id
    for i in range(res.sizes["run"]):
        rows.append(
            [
                shown_id(res["run"].values[i]),
                *(fmt(res[c].values[i]) for c in coords),
                *(
                    fmt(res[name].values[i])
                    for name in ("memorisation_step", "generalisation_step", "delay_steps")
                ),
                fmt(res["w_mem"].values[i]),
                fmt(res["w_gen"].values[i]),
                fmt(res["gamma"].values[i]),
                fmt(res["x_steps"].values[i]),
                str(res["left_out_reason"].values[i]) or "fitted",
            ]
        )
    headers = ["run", *coords, "T_mem", "T_gen", "delay", "w_mem", "w_gen", "gamma /step", "x"]
    headers.append("fit")
    gamma_text = {
        "lr_wd": "lr * weight_decay of each run's optimiser",
        "fitted": "each run's fitted decay rate (fit_decay)",
    }[law_settings.gamma_source]
    n, n_store = int(res["n_runs"]), int(res.attrs["n_runs_in_store"])
    left = [
        f"{reason}: {int(k)}"
        for reason, k in zip(REASONS, res["n_left_out"].values, strict=True)
        if k
    ]
    boot = f"{conf} bootstrap over runs, {settings.n_resamples} resamples"
    ols = f"{conf} OLS, {law_settings.law_cov_type}"
    text = render_table(headers, rows) + (
        f"\n\nDelay law: T_gen - T_mem = a + b x, x = log(w_mem / w_gen) / gamma (steps), "
        f"gamma = {gamma_text}"
        f"\n{n} runs fitted of {n_store}; left out: {', '.join(left) or 'none'}"
        f"\n  slope b = {interval(res, 'slope')} ({ols}; {n} runs)"
        f"\n  intercept a = {interval(res, 'intercept')} steps ({ols}; {n} runs)"
        f"\n  R^2 = {interval(res, 'r_squared')} ({boot}; {n} runs)"
        f"\nFree exponent: log delay = c + k log x"
        f"\n  exponent k = {interval(res, 'exponent')} ({ols}; {n} runs; k = 1: proportional)"
        f"\n  c = {interval(res, 'log_intercept')} ({ols}; {n} runs)"
        f"\n  R^2 (log) = {interval(res, 'log_r_squared')} ({boot}; {n} runs)"
        f"\n\n{_clocks_text(res, boot)}"
        f"{_thresholds_text(res.attrs)}"
        f"\n{_settings_text(res.attrs)}\n"
        + "\n".join(settings_lines(law_settings.to_dict(), "Delay law"))
    )
    if fitted_gamma:
        text += "\n" + "\n".join(settings_lines(decay_settings.to_dict(), "Decay"))
    text += _warnings_text(res.attrs)
    return _with_notes(dataset_to_json(res), res.attrs), text


def _clocks_text(res: xr.Dataset, boot: str) -> str:
    """The weight-norm and logit-scale clocks' R^2 side by side (or why the logit one is
    missing)."""
    from cdsanalysis.tables import fmt, interval, render_table

    logit = str(res["logit_mem"].attrs.get("clock", "test_logit_norm_mean"))
    if "logit_clock_note" in res.attrs:
        return f"Clocks: logit scale not compared: {res.attrs['logit_clock_note']}"
    rows = [
        [
            label,
            x,
            interval(res, f"{prefix}r_squared"),
            interval(res, f"{prefix}log_r_squared"),
            interval(res, f"{prefix}slope"),
            fmt(res[f"{prefix}n_runs"]),
        ]
        for label, x, prefix in (
            ("weight norm (param_norm_total)", "log(w_mem / w_gen) / gamma", ""),
            (f"logit scale ({logit})", "log(z_mem / z_gen) / gamma", "logit_"),
        )
    ]
    headers = ["clock", "x", "R^2", "R^2 (log)", "slope b", "runs"]
    return f"Clocks compared (R^2: {boot}; slope: OLS):\n" + render_table(headers, rows)


def _thresholds(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--thresholds must be comma-separated numbers, got {text!r}") from None


@app.command()
@settings_options(AnalysisSettings, STEPWISE_OPTIONS)
@analysis_command()
def stepwise(
    ds: xr.Dataset,
    thresholds: Annotated[
        str, typer.Option(help="comma-separated thresholds (paper: 0.1..0.9; model-wise 0.5..0.85)")
    ] = ",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS),
    metric: Annotated[str, typer.Option(help="per-step variable")] = DEFAULT_METRIC,
    settings: AnalysisSettings = DEFAULTS,
) -> tuple[Any, str]:
    """First step reaching each threshold: median [min-max] (reached/runs) per data size."""
    from cdsanalysis.data_warnings import store_warnings
    from cdsanalysis.estimators import StepwiseAnalysis
    from cdsanalysis.tables import dataset_to_json, fmt, render_table

    params = settings.to_dict()
    est = StepwiseAnalysis(thresholds=_thresholds(thresholds), metric=metric, **params).fit(ds)
    by_size = est.by_size_
    for warning in store_warnings(ds, settings):  # by_size_ uses the done runs only
        add_warning(by_size.attrs, warning)
    data = {
        "runs": dataset_to_json(est.first_step_.to_dataset()),
        "by_size": dataset_to_json(by_size),
        WARNINGS_KEY: warnings_of(by_size),
    }
    size_coord = settings.size_coord
    rows = []
    for i, size in enumerate(by_size[size_coord].values):
        row = [fmt(size)]
        for j in range(by_size.sizes["threshold"]):
            k, n = by_size["n_reached"].values[i, j], by_size["n_runs"].values[i]
            med = by_size["median_step"].values[i, j]
            lo, hi = by_size["min_step"].values[i, j], by_size["max_step"].values[i, j]
            row.append(f"{fmt(med)} [{fmt(lo)}-{fmt(hi)}] ({k}/{n})" if k else f"- (0/{n})")
        rows.append(row)
    headers = [size_coord] + [f"{t:g}" for t in by_size["threshold"].values]
    text = render_table(headers, rows)
    km_rows = [
        [fmt(size)] + [_km_cell(by_size, i, j) for j in range(by_size.sizes["threshold"])]
        for i, size in enumerate(by_size[size_coord].values)
    ]
    text += (
        f"\n\nfirst step with {metric} >= threshold: median [min-max] (reached/done runs); "
        "never reached = '-', not 0"
        f"\n\n{render_table(headers, km_rows)}"
        f"\n\nsteps to reach the threshold as censored data: Kaplan-Meier median "
        f"[{settings.confidence:.0%} interval] (reached/done runs), runs that never reached it "
        "censored at their last step; '> S' = median not reached within the S steps observed; "
        "bounds: '-' undefined (too few runs), 'inf' open"
        f"\n{_chance_line(by_size.attrs)}"
        f"\n{_settings_text(by_size.attrs)}{_warnings_text(by_size.attrs)}"
    )
    return _with_notes(data, by_size.attrs), text


def _km_cell(by_size: xr.Dataset, i: int, j: int) -> str:
    """A Kaplan-Meier cell of the step-wise table (see :func:`time_to_grok_cell`)."""
    from cdsanalysis.report import time_to_grok_cell

    def get(name: str) -> Any:
        return by_size[f"km_{name}"].values[i, j].item()

    entry = {
        "n_runs": get("n_runs"),
        "median_steps": get("median_steps"),
        "median_low": get("median_low"),
        "median_high": get("median_high"),
        "median_censored": bool(np.isinf(get("median_steps"))),
        "followup_steps": get("followup_steps"),
    }
    return f"{time_to_grok_cell(entry)} ({get('n_events')}/{get('n_runs')})"


def _chance_line(attrs: dict[str, Any]) -> str:
    chance, source = attrs.get("thresholds_chance", "none"), attrs.get("thresholds_chance_source")
    if isinstance(chance, str):
        return f"Chance accuracy: unknown ({source})"
    return f"Chance accuracy: {chance:.4g} ({source})"


@app.command()
@settings_options(DelayLawSettings, DelayLawSettings.field_names(), param="law_settings")
@settings_options(AnalysisSettings, AnalysisSettings.field_names())
@json_envelope
def plot(
    store: StoreArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="with --kind: output path stem (writes STEM.png, STEM.pdf); without: a "
            "directory that gets KIND.png and KIND.pdf of every figure that applies",
        ),
    ],
    kind: Annotated[
        str | None,
        typer.Option(help=f"one of {', '.join(KINDS)} (default: every kind that applies)"),
    ] = None,
    by: Annotated[str, typer.Option(help="model coordinate for landscape / trend")] = DEFAULT_BY,
    group: Annotated[str, typer.Option(help="histogram group")] = "embedding",
    run: Annotated[str, typer.Option(help=f"run for --kind histogram: {RUN_HELP}")] = "0",
    where: WhereOpt = None,
    settings: AnalysisSettings = DEFAULTS,
    law_settings: DelayLawSettings = DEFAULT_LAW,
) -> Outcome:
    """Draw a figure (PNG and PDF): stepwise, curves, landscape, trend, histogram, cds,
    survival or delay_law; without --kind, every one of them that applies to the store (the
    others are listed with the reason). A figure the store cannot give exits 2 with why."""
    from cdsanalysis.thresholds import resolve_thresholds

    if kind is not None and kind not in KINDS:
        raise _fail(f"--kind must be one of {list(KINDS)}, got {kind!r}")
    ds = _open(store, where)
    index = _run_index(ds, run) if kind in (None, "histogram") else 0
    try:
        # The thresholds, resolved once (and reported): the figures draw the absolute eps.
        thresholds = resolve_thresholds(ds, settings)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    settings = thresholds.applied(settings)
    err.print(f"Thresholds: {thresholds.describe()}")
    # matplotlib is imported only when plotting
    from cdsanalysis.plots.common import save_figure
    from cdsanalysis.plots.draw import FigureOptions, draw, draw_all

    options = FigureOptions(by=by, group=group, run=index, law_settings=law_settings)
    if kind is None:
        drawn = draw_all(ds, settings, options, out)
        lines = []
        for name, paths in drawn.files.items():
            lines.extend(paths)
            lines.extend(f"  {line}" for line in warning_lines(drawn.warnings[name]))
        lines.extend(f"skipped {name}: {reason}" for name, reason in drawn.skipped.items())
        if not drawn.files:
            raise _fail("\n".join([*lines, "no figure applies to this store"]))
        flat = [f"{name}: {w}" for name, ws in drawn.warnings.items() for w in ws]
        result = {"files": drawn.files, "skipped": drawn.skipped}
        return Outcome(result, "\n".join(lines), warnings=flat)
    try:
        fig, warnings = draw(kind, ds, settings, options)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    paths = [str(p) for p in save_figure(fig, out)]
    text = "\n".join([*paths, *warning_lines(warnings)])
    return Outcome({"kind": kind, "files": paths}, text, warnings=warnings)


@app.command()
@settings_options(AnalysisSettings, AnalysisSettings.field_names())
def report(
    store: StoreArg,
    html_out: Annotated[
        Path, typer.Option("--html", help="write the one-page HTML report here (self-contained)")
    ],
    pdf_out: Annotated[
        Path | None,
        typer.Option("--pdf", help="also print the page to this PDF (needs chromium)"),
    ] = None,
    by: Annotated[str, typer.Option(help="model coordinate for landscape / trend")] = DEFAULT_BY,
    where: WhereOpt = None,
    settings: AnalysisSettings = DEFAULTS,
) -> None:
    """One self-contained HTML page: the grid and settings, regimes, CDS, time to grok, every
    figure that applies, decay and forecast summaries, provenance."""
    from cdsanalysis.html_report import html_report
    from cdsanalysis.plots.draw import FigureOptions

    ds = _open(store, where)
    page = html_report(ds, store, settings, FigureOptions(by=by))
    html_out.parent.mkdir(parents=True, exist_ok=True)
    html_out.write_text(page, encoding="utf-8")
    print(html_out)
    if pdf_out is not None:
        from cdsanalysis.browser import find_browser, print_pdf

        browser = find_browser()
        if browser is None:
            raise _fail("--pdf needs chromium (apt-get install chromium); the HTML was written")
        print_pdf(browser, html_out, pdf_out)
        print(pdf_out)


@app.command()
@settings_options(AnalysisSettings, REGIMES_OPTIONS)
def watch(
    store: StoreArg,
    once: Annotated[bool, typer.Option("--once", help="print one snapshot and exit")] = False,
    every_seconds: Annotated[
        float, typer.Option("--every-seconds", help="seconds between refreshes")
    ] = 5.0,
    as_json: JsonOpt = False,
    settings: AnalysisSettings = DEFAULTS,
) -> None:
    """A live table of every run (status, steps, last train/test accuracy, regime so far),
    re-read from the store while cds-run writes it (any executor); stops when all runs end."""
    import time

    from cdsanalysis.validate import StoreValidationError
    from cdsanalysis.watch import all_final, read, render_snapshot

    if every_seconds <= 0:
        raise _fail(f"--every-seconds must be > 0, got {every_seconds}")
    while True:
        try:
            rows = read(store, settings)
        except StoreValidationError as exc:
            raise _fail(str(exc)) from None
        if as_json:  # one envelope per refresh (JSON lines)
            outcome = Outcome({"store": store, "runs": rows}, "")
            options = {"store": store, "once": once, "every_seconds": every_seconds}
            print(json.dumps(envelope("watch", options, outcome)), flush=True)
        else:
            print(render_snapshot(rows, store) + "\n", flush=True)
        if once or all_final(rows):
            return
        time.sleep(every_seconds)


# -- runs logged elsewhere: import and export -----------------------------------------------


@app.command("import")
@json_envelope
def import_command(
    kind: Annotated[str, typer.Argument(help="tensorboard, wandb, table or authors")],
    source: Annotated[Path, typer.Argument(help="file or directory to read the runs from")],
    out: Annotated[Path, typer.Option("--out", help="the run store to create (STORE.zarr)")],
    metric_map: Annotated[
        list[str] | None,
        typer.Option("--map", help="SOURCE=SCHEMA metric name, overriding the default table"),
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option("--ignore", help="drop source metrics matching PATTERN")
    ] = None,
    path_template: Annotated[
        str | None,
        typer.Option(help="configuration from each run's path: 'runs/{model}_{n_samples}_{seed}'"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="sidecar YAML: fields for every run, and per run under 'runs:'"
        ),
    ] = None,
    set_values: Annotated[
        list[str] | None, typer.Option("--set", help="FIELD=VALUE for every run")
    ] = None,
    step_offset: Annotated[
        int,
        typer.Option(help="added once to every imported step (1 for sources counting from 0)"),
    ] = 0,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", help="KEY=VALUE for the importer (wandb: step_column=COLUMN)"),
    ] = None,
) -> Outcome:
    """Import runs logged elsewhere (TensorBoard, W&B exports, tables, the authors' logs) into a
    new run store; every analysis then works on it."""
    import yaml

    from cdsanalysis.importers.mapping import coerce, parse_pairs
    from cdsanalysis.importers.registry import ImporterError, check_options, get_importer
    from cdsanalysis.importers.writer import ImportOptions, write_store

    try:
        importer = get_importer(kind)
        sidecar = {}
        if config is not None:
            try:
                sidecar = yaml.safe_load(config.read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ValueError(f"--config {config}: cannot be read ({exc})") from None
        options = ImportOptions(
            metric_map=parse_pairs(metric_map or [], "--map"),
            ignore=tuple(ignore or ()),
            path_template=path_template,
            sidecar=sidecar,
            set_values={k: coerce(v) for k, v in parse_pairs(set_values or [], "--set").items()},
            step_offset=step_offset,
        )
        importer_options = {k: coerce(v) for k, v in parse_pairs(option or [], "--option").items()}
        check_options(kind, importer_options)
        if not source.exists():
            raise ValueError(f"{source} does not exist")
        summary = write_store(
            importer.read_runs(source, importer_options),
            out,
            kind=kind,
            source=str(source),
            options=options,
            importer_version=str(getattr(importer, "version", "")),
        )
    except (ImporterError, ValueError, FileExistsError) as exc:
        raise _fail(str(exc)) from None
    text = (
        f"{summary.store}: {summary.runs} runs, {summary.steps} steps, "
        f"{summary.points} measurements of {', '.join(summary.metrics) or 'no metric'} "
        f"(imported from {kind} {source})"
    )
    return Outcome(summary.to_dict(), text)


@app.command()
@json_envelope
def export(
    store: StoreArg,
    out: Annotated[Path, typer.Option("--out", help="the long table to write")],
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    where: WhereOpt = None,
) -> Outcome:
    """Write the store as a tidy long table (run, step, metric, value) and a per-run config
    table beside it (STEM.config.EXT); `cds-analyze import table` reads them back."""
    from cdsanalysis.export import export_store

    if file_format not in ("parquet", "csv"):
        raise _fail(f"--format must be parquet or csv, got {file_format!r}")
    ds = _open(store, where)
    long_path, config_path, rows = export_store(ds, out, file_format)  # type: ignore[arg-type]
    result = {"long": str(long_path), "config": str(config_path), "rows": rows}
    return Outcome(
        result, f"{long_path}: {rows} measurements; {config_path}: {ds.sizes['run']} runs"
    )


def main() -> None:
    app(prog_name="cds-analyze")


if __name__ == "__main__":
    sys.exit(main())
