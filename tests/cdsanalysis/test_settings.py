"""The one settings object: documented once, validated with errors that name the field, taken
by every analysis function and echoed by every result."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from cdsanalysis.cds import estimate_cds
from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.decay import DecaySettings, fit_decay
from cdsanalysis.regimes import RegimeRules, classify_data_sizes, classify_runs
from cdsanalysis.report import regimes_report
from cdsanalysis.settings import DEFAULTS, AnalysisSettings
from cdsanalysis.stepwise import stepwise_by_size, stepwise_steps

STEPS = 60

#: Every field set away from its default (valid values).
CHANGED = AnalysisSettings(
    eps=0.8,
    eps_relative=0.8,
    ceiling_accuracy=0.95,
    memorisation_threshold=0.95,
    aggregate="mean_last",
    last_steps=30,
    last_steps_fraction=0.2,
    smoothing="ema",
    smoothing_width=2.0,
    sustain=2,
    minibatch_sustain=4,
    surplus_max_delay_ratio=3.0,
    surplus_max_delay_steps=5.0,
    size_coord="n_samples",  # the only size the planted stores have
    chance_accuracy=0.05,
    curve_sizes_per_side=2,
    curve_links=("logit", "probit"),
    curve_variance="constant",
    require_all_larger=True,
    allow_varying=("seed", "split_seed"),
    n_resamples=150,
    confidence=0.8,
    seed=7,
    km_ci_method="linear",
    fraction_ci_method="wilson",
    logit_scale="test_logit_max_mean",
)


def test_changed_really_changes_every_field_but_size_coord():
    same = [
        f.name
        for f in dataclasses.fields(AnalysisSettings)
        if getattr(CHANGED, f.name) == getattr(DEFAULTS, f.name)
    ]
    assert same == ["last_k", "size_coord"]  # (last_k excludes last_steps)


@pytest.mark.parametrize("cls", [AnalysisSettings, DecaySettings])
def test_every_field_is_documented_once_with_its_default(cls):
    docs = cls.field_docs()
    fields = dataclasses.fields(cls)
    assert list(docs) == [f.name for f in fields]  # all of them, in order, nothing else
    for f in fields:
        assert docs[f.name].endswith(f"Default ``{f.default!r}``."), f.name


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("eps", 90),
        ("eps", 0.0),
        ("memorisation_threshold", 1.5),
        ("aggregate", "median"),
        ("last_k", 0),
        ("last_steps", 0),
        ("last_steps_fraction", 0.0),
        ("eps_relative", 1.5),
        ("ceiling_accuracy", 0.0),
        ("smoothing", "loess"),
        ("logit_scale", "param_norm_total"),
        ("smoothing_width", -1.0),
        ("sustain", 0),
        ("surplus_max_delay_ratio", 0.5),
        ("surplus_max_delay_steps", -1.0),
        ("size_coord", "width"),
        ("chance_accuracy", 1.0),
        ("n_resamples", 0),
        ("confidence", 1.0),
        ("seed", 1.5),
        ("km_ci_method", "greenwood"),
        ("fraction_ci_method", "wald"),
        ("curve_links", ("probit",)),
        ("curve_links", ("logit", "cauchit")),
        ("curve_links", ("logit", "probit", "probit")),
        ("curve_links", ()),
        ("curve_variance", "gaussian"),
    ],
)
def test_bad_values_are_refused_naming_the_field(field, bad):
    extra = {"smoothing": "ema"} if field == "smoothing_width" else {}
    with pytest.raises(ValueError, match=field):
        AnalysisSettings(**{field: bad, **extra})


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("model", "power"),
        ("window", (300, 100)),
        ("window", "late"),
        ("w_star", -1.0),
        ("cov_type", "robust"),
        ("min_points", 2),
    ],
)
def test_bad_decay_values_are_refused_naming_the_field(field, bad):
    with pytest.raises(ValueError, match=field):
        DecaySettings(**{field: bad})


def test_a_window_in_steps_and_in_values_at_once_is_refused():
    with pytest.raises(ValueError, match="last_k.*last_steps"):
        AnalysisSettings(last_k=5, last_steps=50)
    with pytest.raises(ValueError, match="ceiling_accuracy"):
        AnalysisSettings(chance_accuracy=0.5, ceiling_accuracy=0.4)


def test_replace_refuses_an_unknown_name_and_lists_the_fields():
    with pytest.raises(ValueError, match="'resamples'.*n_resamples"):
        DEFAULTS.replace(resamples=10)
    assert DEFAULTS.replace(eps=0.8).eps == 0.8 and DEFAULTS.eps == 0.9  # frozen: a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.eps = 0.8  # type: ignore[misc]


def test_normalised_values():
    final = AnalysisSettings(aggregate="final", last_k=5)
    assert (final.last_k, final.last_steps) == (None, None)  # no window for the last value
    assert AnalysisSettings(allow_varying="split_seed").allow_varying == ("split_seed",)
    assert AnalysisSettings(allow_varying=["seed"]).allow_varying == ("seed",)
    assert DecaySettings(window="200:800").window == (200, 800)
    assert RegimeRules is AnalysisSettings  # the former name still works


@pytest.mark.parametrize("engine", ["zarr", "scipy"])
def test_attrs_survive_a_real_file_and_give_the_settings_back(tmp_path, engine):
    decay = DecaySettings(window=(20, 50), w_star=3.5)
    attrs = {**CHANGED.as_attrs(), **{f"decay_{k}": v for k, v in decay.as_attrs().items()}}
    path = tmp_path / "attrs"
    if engine == "zarr":
        xr.Dataset(attrs=attrs).to_zarr(path)
    else:
        xr.Dataset(attrs=attrs).to_netcdf(path, engine="scipy")
    back = xr.open_dataset(path, engine=engine).attrs
    assert AnalysisSettings.from_attrs(back) == CHANGED
    echoed = {k[len("decay_") :]: v for k, v in back.items() if k.startswith("decay_")}
    assert DecaySettings.from_attrs(echoed) == decay
    assert AnalysisSettings.from_attrs({}) == DEFAULTS


# -- every function takes the settings and its result echoes them ------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Two sizes x two seeds with rising, slightly noisy accuracy and a decaying norm."""
    from cdsanalysis.store import open_runs
    from tests.cdsanalysis.conftest import Curves, Planted, write_store

    c = Curves()
    rng = np.random.default_rng(0)
    t = np.arange(1, STEPS + 1)
    runs = {}
    for n, gen in ((100, 41), (200, 21)):
        for seed in (0, 1):
            test = c.jump(STEPS, gen, 0.1, 0.97) + rng.normal(0, 0.01, STEPS).astype(np.float32)
            norm = np.where(t < 11, 20.0, 20.0 * np.exp(-0.01 * (t - 11)))
            runs[(n, seed)] = Planted(c.jump(STEPS, 11, 0.1, 1.0), c.evaluated(test), norm=norm)
    path = write_store(tmp_path_factory.mktemp("settings") / "runs.zarr", runs, STEPS)
    ds = open_runs(str(path))
    # a replicate coordinate, so that allow_varying=("seed", "split_seed") has one to allow
    return ds.assign_coords(split_seed=("run", np.arange(ds.sizes["run"])))


def _echo(attrs):
    return AnalysisSettings.from_attrs(attrs)


def test_every_result_echoes_the_settings_it_was_made_with(planted):
    assert estimate_cds(planted, CHANGED).settings == CHANGED
    assert _echo(estimate_cds(planted, CHANGED).per_n.attrs) == CHANGED
    assert _echo(cds_curve(planted, CHANGED).attrs) == CHANGED
    runs = classify_runs(planted, CHANGED)
    assert _echo(runs.attrs) == CHANGED
    assert _echo(classify_data_sizes(runs, CHANGED).attrs) == CHANGED
    first = stepwise_steps(planted, CHANGED, thresholds=[0.5])
    assert _echo(first.attrs) == CHANGED
    assert _echo(stepwise_by_size(first, CHANGED).attrs) == CHANGED
    assert _echo(fit_decay(planted, CHANGED).attrs) == CHANGED
    assert regimes_report(planted, CHANGED)["settings"] == CHANGED.to_dict()


def test_keyword_overrides_are_the_settings_object(planted):
    changes = dict(eps=0.8, n_resamples=100, seed=3, allow_varying=("seed", "split_seed"))
    by_object = estimate_cds(planted, AnalysisSettings(**changes))
    by_keywords = estimate_cds(planted, **changes)
    assert by_keywords == by_object  # the estimate, its interval, run count and settings
    on_top = estimate_cds(planted, AnalysisSettings(eps=0.8), **{**changes, "eps": 0.9})
    assert on_top.settings == by_object.settings.replace(eps=0.9)
    with pytest.raises(ValueError, match="'epsilon'"):
        estimate_cds(planted, epsilon=0.8)


def test_summaries_default_to_the_settings_their_input_echoes(planted):
    runs = classify_runs(planted, CHANGED)
    assert _echo(classify_data_sizes(runs).attrs) == CHANGED
    again = _echo(classify_data_sizes(runs, n_resamples=50).attrs)
    assert again == CHANGED.replace(n_resamples=50)
    first = stepwise_steps(planted, CHANGED, thresholds=[0.5])
    assert _echo(stepwise_by_size(first).attrs) == CHANGED


def test_decay_overrides_reach_the_right_settings(planted):
    res = fit_decay(planted, window="11:50", n_resamples=100)
    assert res.attrs["decay_window"] == [11, 50] and res.attrs["n_resamples"] == 100
    assert res.window_start_step.values.tolist() == [11.0] * 4
    with pytest.raises(ValueError, match="'windows'"):
        fit_decay(planted, windows="11:50")
