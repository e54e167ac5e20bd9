"""``cds-analyze report STORE --html OUT.html``: one self-contained page about a run store.

The page holds the grid and its settings, the regimes table, the CDS with its bracket, interval
and warnings, the time to grok per size, every figure that applies (inline PNG data URIs; the
others listed with the reason), the decay and forecast summaries and the store's provenance.
It loads nothing from the network and runs no script.

Every number on it comes from the producer of the text and JSON reports
(:func:`cdsanalysis.report.regimes_report` and its cells, the ``decay`` and ``forecast``
commands' text, :func:`cdsanalysis.plots.draw.draw_all`): this module only lays them out. A
section that cannot be computed for this store says why instead of failing the page.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
from collections.abc import Callable, Sequence
from typing import Any

import xarray as xr

from cdsanalysis.report import (
    explanation_lines,
    grokked_cell,
    regimes_report,
    regimes_table,
    settings_lines,
    time_to_grok_cell,
)
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.thresholds import resolve_thresholds

#: Resolution of the inlined figures, in dots per inch (the figures are 3.4-7 in wide).
FIGURE_DPI = 110
#: Store attributes shown as provenance (the grid text has its own section).
PROVENANCE_ATTRS = (
    "grid_name",
    "schema_name",
    "schema_version",
    "created_by",
    "created_utc",
    "run_id_scheme",
)

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } th small { font-weight: normal; color: #555; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: 12px; }
.warning { color: #8a4b00; } .why { color: #555; font-style: italic; }
figure { display: inline-block; margin: .5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #444; max-width: 40em; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(headers: Sequence[Any], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    def head(h: Any) -> str:
        if isinstance(h, tuple):  # (name, sub-heading)
            return f"<th>{_e(h[0])}<br><small>{_e(h[1])}</small></th>"
        return f"<th>{_e(h)}</th>"

    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{''.join(map(head, headers))}</tr></thead>{body}</table>"


def _lines(lines: Sequence[str]) -> str:
    items = []
    for line in lines:
        cls = ' class="warning"' if line.startswith("Warning:") else ""
        items.append(f"<li{cls}>{_e(line)}</li>")
    return f"<ul>{''.join(items)}</ul>"


def _why(reason: str) -> str:
    return f'<p class="why">Not available for this store: {_e(reason)}</p>'


def _section(title: str, anchor: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _command_text(name: str, ds: xr.Dataset, **kwargs: Any) -> str:
    """The text report of ``cds-analyze NAME`` on ``ds`` (the command's own producer, so the
    page and the terminal never disagree)."""
    from cdsanalysis import cli

    return inspect.unwrap(getattr(cli, name))(ds, **kwargs)[1]


def _summary_and_table(text: str) -> str:
    """A command's text as its summary (below the per-run table) and the table folded."""
    table, _, summary = text.partition("\n\n")
    return (
        f"<pre>{_e(summary)}</pre>"
        f"<details><summary>per run</summary><pre>{_e(table)}</pre></details>"
    )


def _guarded(make: Callable[[], str]) -> str:
    try:
        return make()
    except ValueError as exc:  # an analysis that refuses this store says why
        return _why(str(exc).strip())


def html_report(
    ds: xr.Dataset, store: str, settings: AnalysisSettings, figure_options: Any = None
) -> str:
    """The HTML page of the runs ``ds`` of ``store`` under ``settings`` (see the module).

    ``figure_options``: :class:`cdsanalysis.plots.draw.FigureOptions` (default: its defaults).
    """
    from cdsanalysis.plots.draw import FigureOptions, draw_all

    status = ds["status"].values.astype(str)
    counts = {s: int((status == s).sum()) for s in sorted(set(status.tolist()))}
    title = f"cds report: {ds.attrs.get('grid_name', store)}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p>Store <code>{_e(store)}</code>: {ds.sizes['run']} runs ("
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + ").</p>",
    ]
    try:
        thresholds = resolve_thresholds(ds, settings)
        applied = thresholds.applied(settings)  # the figures draw the absolute eps
        threshold_line = f"Thresholds: {thresholds.describe()}"
    except ValueError as exc:
        applied, threshold_line = settings, f"Thresholds: not resolved: {exc}"

    grid_text = str(ds.attrs.get("grid_yaml", "(no grid text stored)"))
    setting_text = "\n".join([threshold_line, *settings_lines(settings.to_dict())])
    grid_body = f"<pre>{_e(grid_text)}</pre><pre>{_e(setting_text)}</pre>"
    parts.append(_section("Grid and settings", "grid", grid_body))

    report: dict[str, Any] | None = None
    try:
        report = regimes_report(ds, settings)
    except ValueError as exc:
        regimes_body = cds_body = grok_body = _why(str(exc).strip())
    if report is not None:
        headers, rows = regimes_table(report)
        regimes_body = _table(headers, rows, "regimes")
        # the CDS lines, rules, thresholds and every warning (the settings are shown above)
        shown = set(settings_lines(report["settings"]))
        cds_body = _lines([line for line in explanation_lines(report) if line not in shown])
        conf = f"{settings.confidence:.0%}"
        grok_rows = [
            [
                row["n_samples"],
                time_to_grok_cell(row["time_to_grok"]),
                grokked_cell(row["time_to_grok"]),
            ]
            for row in report["data_sizes"]
        ]
        grok_body = _table(
            [
                "n",
                ("time to grok (Kaplan-Meier)", f"median [{conf} interval]; > S: censored"),
                ("grokked", f"k/N [{conf} {settings.fraction_ci_method}]"),
            ],
            grok_rows,
            "grok",
        )
    parts.append(_section("Regimes", "regimes", regimes_body))
    parts.append(_section("Critical data size (CDS)", "cds", cds_body))
    parts.append(_section("Time to grok per size", "grok", grok_body))

    figures: list[str] = []
    options = figure_options or FigureOptions()

    def keep(kind: str, fig) -> None:
        figures.append(f'<figure class="figure" id="figure-{kind}"><img alt="{kind}" src="')
        figures.append(_png(fig))
        figures.append(f'"><figcaption>{_e(kind)}</figcaption></figure>')

    drawn = draw_all(ds, applied, options, keep=keep)
    skipped = [[kind, reason] for kind, reason in drawn.skipped.items()]
    figure_body = "".join(figures) or _why("no figure applies")
    if skipped:
        figure_body += "<h3>Not drawn</h3>" + _table(["figure", "why"], skipped, "skipped")
    parts.append(_section("Figures", "figures", figure_body))

    parts.append(
        _section(
            "Weight-norm decay",
            "decay",
            _guarded(lambda: _summary_and_table(_command_text("decay", ds, settings=settings))),
        )
    )
    parts.append(
        _section(
            "Forecast of the generalisation step",
            "forecast",
            _guarded(
                lambda: _summary_and_table(_command_text("forecast_command", ds, settings=settings))
            ),
        )
    )
    provenance = [[k, ds.attrs[k]] for k in PROVENANCE_ATTRS if k in ds.attrs]
    parts.append(_section("Provenance", "provenance", _table(["attribute", "value"], provenance)))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
