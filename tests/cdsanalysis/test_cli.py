"""``cds-analyze cds``, ``decay`` and ``stepwise`` on real stores: the numbers they print (as text
and as ``--json``) and the settings they echo."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from cdsanalysis import open_runs
from cdsanalysis.cli import ENVELOPE_KEYS, app
from cdsanalysis.settings import AnalysisSettings
from tests.cdsanalysis.conftest import Curves, Planted, write_store

#: Planted final test accuracy of each run, per size (three seeds): the mean passes 0.9 from
#: n = 300 on.
ACCURACY = {
    100: [0.20, 0.30, 0.25],
    200: [0.60, 0.70, 0.65],
    300: [0.92, 0.94, 0.96],
    400: [0.97, 0.98, 0.99],
}
STEPS = 40


def _cli(*args: str, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def _settings(text: str) -> str:
    """The wrapped ``Settings:`` lines of a text report, joined."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Settings: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), None)
    return " ".join(line.strip() for line in lines[start:end])


def _var(data: dict, name: str) -> np.ndarray:
    return np.array(data["data_vars"][name]["data"], dtype=float)


@pytest.fixture(scope="module")
def flat_store(tmp_path_factory):
    c = Curves()
    runs = {
        (n, seed): c.flat(STEPS, acc)
        for n, accs in ACCURACY.items()
        for seed, acc in enumerate(accs)
    }
    return write_store(tmp_path_factory.mktemp("cli") / "flat.zarr", runs, STEPS)


def test_cds_json_has_every_size_with_its_runs_mean_and_interval(flat_store):
    out = _cli("cds", flat_store, "--json", "--resamples", "300", "--aggregate", "final")
    envelope = json.loads(out.stdout)
    assert list(envelope) == ["command", "settings", "warnings", "result"] == list(ENVELOPE_KEYS)
    assert envelope["command"] == "cds" and envelope["settings"]["store"] == str(flat_store)
    assert envelope["settings"]["by"] is None and envelope["settings"]["where"] is None
    data = envelope["result"]
    assert data["coords"]["n_samples"]["data"] == [100, 200, 300, 400]
    assert _var(data, "n_runs").tolist() == [3, 3, 3, 3]
    planted = [np.mean(np.float32(accs)) for accs in ACCURACY.values()]
    mean, low, high = (
        _var(data, k) for k in ("mean_accuracy", "mean_accuracy_low", "mean_accuracy_high")
    )
    np.testing.assert_allclose(mean, planted, rtol=1e-6)
    assert (low <= mean).all() and (mean <= high).all() and (low < high).all()
    scalar = {k: v["data"] for k, v in data["data_vars"].items() if not v["dims"]}
    assert scalar["cds_bracket_low"] == 200 and scalar["cds_bracket_high"] == 300
    assert scalar["n_runs_total"] == 12

    # the local curve crosses 0.9 between the last failing and the first passing size: by
    # hand, logit interpolation of the means 0.65 (n = 200) and 0.94 (n = 300) above chance
    # 1/113 (the fixture's task: modular addition, p = 113)
    def logit_above_chance(a, chance=1 / 113):
        r = (a - chance) / (1 - chance)
        return np.log(r / (1 - r))

    x0, x1 = np.log(200), np.log(300)
    y0, y1, target = (logit_above_chance(a) for a in (0.65, 0.94, 0.9))
    by_hand = np.exp(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
    assert scalar["cds_curve"] == pytest.approx(by_hand, rel=1e-5)
    assert scalar["cds_curve_low"] < scalar["cds_curve"] < scalar["cds_curve_high"]
    assert scalar["cds_curve_censoring"] == "none"
    assert envelope["warnings"] == [] and "warnings" not in data
    echoed = AnalysisSettings.from_attrs(data["attrs"])
    assert echoed == AnalysisSettings(aggregate="final", n_resamples=300)
    assert envelope["settings"]["analysis"] == echoed.to_dict()


def test_cds_text_rows_estimates_and_settings(flat_store):
    text = _cli("cds", flat_store, "--resamples", "300", "--aggregate", "final", "--eps", "0.6")
    lines = text.stdout.splitlines()
    rows = {int(line.split()[0]): line for line in lines if re.match(r"\d+ ", line)}
    assert sorted(rows) == [100, 200, 300, 400]
    assert all(row.split()[-2] == "3" for row in rows.values())  # runs per size
    # eps 0.6: the bracket ends at the first size whose mean passes 0.6
    assert re.search(r"^  grid bracket: \(100, 200\], in \d+% of 300 bootstrap", text.stdout, re.M)
    assert re.search(r"^  curve estimate: 1\d\d  90% interval \[", text.stdout, re.M)
    assert "CDS (eps=0.6, 12 runs)" in text.stdout
    settings = _settings(text.stdout)
    for echoed in ("eps=0.6,", "aggregate=final,", "last_k=None,", "n_resamples=300,", "seed=0"):
        assert echoed in settings


def test_regimes_takes_every_rule_as_an_option(flat_store):
    args = ("regimes", flat_store, "--json", "--aggregate", "final", "--resamples", "100")
    envelope = json.loads(_cli(*args, "--sustain", "2", "--allow-varying", "seed").stdout)
    report = envelope["result"]
    asked = AnalysisSettings(aggregate="final", n_resamples=100, sustain=2).to_dict()
    assert report["settings"] == envelope["settings"]["analysis"] == asked
    assert report["cds"]["bracket"]["bracket"] == [200, 300] and report["cds"]["n_runs"] == 12
    assert [row["n_runs"] for row in report["data_sizes"]] == [3, 3, 3, 3]


def test_cds_refuses_a_bad_setting_naming_it(flat_store):
    bad = _cli("cds", flat_store, "--confidence", "1.5", code=2)
    assert "confidence must lie in (0, 1)" in bad.output


GAMMA = 0.01  # planted decay rate per step (lr * wd of the written grid is 1e-3)


@pytest.fixture(scope="module")
def decay_store(tmp_path_factory):
    c = Curves()
    t = np.arange(1, 201, dtype=np.float64)
    runs = {}
    for seed, (mem, gen) in enumerate(((21, 151), (31, 171))):
        norm = np.where(t < mem, 30.0, 30.0 * np.exp(-GAMMA * (t - mem)))
        norm *= np.exp(np.random.default_rng(seed).normal(0.0, 0.002, t.size))
        planted = c.run(200, mem, gen)
        runs[(100, seed)] = Planted(planted.train_accuracy, planted.test_accuracy, norm=norm)
    return write_store(tmp_path_factory.mktemp("cli") / "decay.zarr", runs, 200)


def test_decay_json_recovers_the_planted_rate_with_intervals(decay_store):
    envelope = json.loads(_cli("decay", decay_store, "--json", "--resamples", "200").stdout)
    assert envelope["command"] == "decay" and envelope["settings"]["law"] is False
    assert envelope["settings"]["decay"]["model"] == "exponential"  # each settings group
    assert envelope["settings"]["delay_law"]["gamma_source"] == "lr_wd"
    data = envelope["result"]
    gamma = _var(data, "gamma")
    np.testing.assert_allclose(gamma, GAMMA, rtol=0.05)
    assert (_var(data, "gamma_low") < GAMMA).all() and (_var(data, "gamma_high") > GAMMA).all()
    assert data["data_vars"]["fit_status"]["data"] == ["ok", "ok"]
    # the norm decays from memorisation on: its peak after memorisation is there
    assert _var(data, "window_start_step").tolist() == [21.0, 31.0]
    assert data["data_vars"]["window_start_rule"]["data"] == ["norm peak after memorisation"] * 2
    assert _var(data, "window_end_step").tolist() == [151.0, 171.0]  # generalisation steps
    mean = {
        k: data["data_vars"][k]["data"]
        for k in ("gamma_mean", "gamma_mean_low", "gamma_mean_high", "n_fitted", "n_pooled")
    }
    assert mean["n_fitted"] == mean["n_pooled"] == 2
    assert data["data_vars"]["pooled"]["data"] == [True, True]
    assert mean["gamma_mean_low"] < GAMMA < mean["gamma_mean_high"]
    assert gamma.min() <= mean["gamma_mean"] <= gamma.max()  # a weighted mean of the runs
    assert "interval on the mean rate" in data["data_vars"]["gamma_mean"]["attrs"]["description"]
    assert data["attrs"]["decay_model"] == "exponential" and data["attrs"]["decay_window"] == "auto"
    assert AnalysisSettings.from_attrs(data["attrs"]) == AnalysisSettings(n_resamples=200)


def test_decay_text_with_a_fixed_window(decay_store):
    text = _cli("decay", decay_store, "--window", "41:140", "--resamples", "200").stdout
    run_rows = [line for line in text.splitlines() if re.match(r"\w+  100 ", line)]
    # each run named by its full id (the 12 hex digits of the store's run coordinate)
    assert sorted(row.split()[0] for row in run_rows) == sorted(open_runs(decay_store).run.values)
    assert len(run_rows) == 2 and all(
        " 41-140 " in row and re.search(r" ok +yes$", row) for row in run_rows
    )
    assert "window: fixed, steps 41-140" in text
    assert "pooled over 2 finished runs (2 fitted): mean rate gamma = " in text
    assert "90% random-effects interval on the mean rate, Hartung-Knapp-Sidik-Jonkman" in text
    assert re.search(r"^Decay: model=exponential, window=41,140, ", text, re.M)
    assert "n_resamples=200," in _settings(text)
    bad = _cli("decay", decay_store, "--window", "140:41", code=2)
    assert "window must be 'auto' or (start_step, end_step)" in bad.output


@pytest.fixture(scope="module")
def ramp_store(tmp_path_factory):
    """Test accuracy rises 0.02 per step up to 0.75 (n = 100) or 0.04 per step up to 0.95
    (n = 200), evaluated every 10 steps; two seeds each."""
    c = Curves()
    runs = {}
    for n, rate, top in ((100, 0.02, 0.75), (200, 0.04, 0.95)):
        ramp = np.clip(np.arange(STEPS * 2) * rate, 0, top).astype(np.float32)
        for seed in (0, 1):
            runs[(n, seed)] = Planted(c.jump(STEPS * 2, 5, 0.1, 1.0), c.evaluated(ramp))
    return write_store(tmp_path_factory.mktemp("cli") / "ramp.zarr", runs, STEPS * 2)


def test_stepwise_json_counts_and_steps_per_size(ramp_store):
    args = ("stepwise", ramp_store, "--thresholds", "0.5,0.9", "--resamples", "200", "--json")
    data = json.loads(_cli(*args).stdout)["result"]
    by_size = data["by_size"]
    assert by_size["coords"]["n_samples"]["data"] == [100, 200]
    assert by_size["coords"]["threshold"]["data"] == [0.5, 0.9]
    assert _var(by_size, "n_runs").tolist() == [2, 2]
    # evaluated steps 1, 11, 21, ...: 0.5 is reached at step 31 (n = 100: ramp 0.6) and at
    # step 21 (n = 200: 0.8); 0.9 only by n = 200, at step 31 (1.2 clipped to 0.95)
    assert _var(by_size, "n_reached").tolist() == [[2, 0], [2, 2]]
    median = _var(by_size, "median_step")
    assert median[0, 0] == 31 and median[1].tolist() == [21, 31] and np.isnan(median[0, 1])
    low, mean, high = (_var(by_size, k) for k in ("mean_step_low", "mean_step", "mean_step_high"))
    reached = ~np.isnan(mean)
    assert (low[reached] <= mean[reached]).all() and (mean[reached] <= high[reached]).all()
    runs = data["runs"]["data_vars"]["first_step"]
    assert runs["dims"] == ["run", "threshold"] and len(runs["data"]) == 4
    echoed = AnalysisSettings.from_attrs(by_size["attrs"])
    assert echoed == AnalysisSettings(n_resamples=200)
    assert by_size["attrs"]["metric"] == "test_accuracy"


def test_stepwise_text_cells_and_settings(ramp_store):
    args = ("stepwise", ramp_store, "--thresholds", "0.5,0.9", "--sustain", "2")
    text = _cli(*args, "--resamples", "200").stdout
    lines = [line for line in text.splitlines() if re.match(r"\d+ ", line)]
    # Two tables: the steps of the runs that reached a threshold, then the Kaplan-Meier medians.
    rows = {int(line.split()[0]): line for line in lines[:2]}
    km_rows = {int(line.split()[0]): line for line in lines[2:]}
    # sustain 2: the event is the first of two evaluations in a row at or above the threshold
    # (the ramp only rises, so the same steps)
    assert "31 [31-31] (2/2)" in rows[100] and "- (0/2)" in rows[100]
    # Both runs at 31: the median is 31, its interval undefined with two runs; 0.9 is never
    # reached within the 80 steps: censored, no number beyond the data.
    assert "31 [-, -] (2/2)" in km_rows[100] and "> 80 [-, -] (0/2)" in km_rows[100]
    assert "21 [21-21] (2/2)" in rows[200] and "31 [31-31] (2/2)" in rows[200]
    assert "never reached = '-', not 0" in text
    assert "sustain=2," in _settings(text) and "n_resamples=200," in _settings(text)
    bad = _cli("stepwise", ramp_store, "--thresholds", "0.5,high", code=2)
    assert "--thresholds must be comma-separated numbers" in bad.output


# -- warnings: every command states them, in its text and its --json --------------------------

#: Each command with options fitting the planted stores (their curves are flat: the last
#: value is the aggregate).
WARNED = {
    "regimes": ["--aggregate", "final"],
    "cds": ["--aggregate", "final"],
    "decay": [],
    "stepwise": ["--thresholds", "0.5"],
    "plot": ["--kind", "cds", "--aggregate", "final"],
}


@pytest.fixture(scope="module")
def weak_store(tmp_path_factory):
    """Accuracy 0.30 / 0.95 / 0.70 at n = 100 / 200 / 300 (a fall at 300), three seeds; the
    third run at n = 300 is still running (so n = 300 has 2 finished runs)."""
    c = Curves()
    runs = {
        (n, seed): c.flat(STEPS, acc)
        for n, acc in ((100, 0.3), (200, 0.95), (300, 0.7))
        for seed in range(3)
    }
    runs[(300, 2)] = Curves.with_state(runs[(300, 2)], "running", STEPS // 2)
    return write_store(tmp_path_factory.mktemp("cli") / "weak.zarr", runs, STEPS)


def _warned(command: str, store, tmp_path) -> tuple[list[str], list[str]]:
    """The warnings of one command: from its --json (top level), and its text's last lines."""
    args = [command, store, *WARNED[command], "--resamples", "200"]
    if command == "plot":
        args += ["--out", str(tmp_path / "figure")]
    data = json.loads(_cli(*args, "--json").stdout)
    assert list(data) == list(ENVELOPE_KEYS) and data["command"] == command
    assert "warnings" not in data["result"]  # stated once, in the envelope
    lines = _cli(*args).stdout.rstrip("\n").splitlines()
    warned = [line for line in lines if line.startswith("Warning: ")]
    assert lines[len(lines) - len(warned) :] == warned  # at the end, after the settings
    return data["warnings"], [line.removeprefix("Warning: ") for line in warned]


@pytest.mark.parametrize("command", WARNED)
def test_every_command_states_its_warnings(command, weak_store, flat_store, tmp_path):
    from_json, from_text = _warned(command, weak_store, tmp_path)
    assert from_json == from_text
    unfinished, few, falls = from_json[:3]
    fate = "left out of the pooled rate" if command == "decay" else "left out"
    assert unfinished.startswith("1 run of 9 is unfinished (1 running): ") and fate in unfinished
    assert few.startswith("n = 300 has 2 finished runs (< 3)")
    assert falls.startswith("mean test accuracy is not monotone in n: it falls from 0.950")
    assert "at n = 300" in falls
    if command in ("regimes", "cds", "plot"):  # they estimate the CDS: its runs agree exactly
        assert len(from_json) == 4
        assert from_json[3].startswith("the curve estimate of the CDS is not estimable")
    else:
        assert len(from_json) == 3
    # a store without any of these problems: no warning, in either form
    assert _warned(command, flat_store, tmp_path) == ([], [])


def test_cds_by_model_names_the_model_of_each_warning(weak_store):
    data = json.loads(_cli("cds", weak_store, "--by", "seed", "--json", "--resamples", "50").stdout)
    # per seed ('model'): one run per size; seed 2 has no finished run at n = 300
    assert data["warnings"][0].startswith("1 run of 9 is unfinished")
    assert "seed = 2: n = 300 has 0 finished runs (< 3)" in " ".join(data["warnings"])
    assert data["result"]["attrs"]["warnings"] == data["warnings"]


# -- start-up: only light modules ---------------------------------------------------------------


def test_importing_the_cli_loads_no_analysis_stack():
    """``cds-analyze --help`` stays fast: importing the CLI (and building every command's
    options) loads none of the heavy libraries; the analysis modules load in the commands."""
    import subprocess
    import sys

    heavy = ("xarray", "zarr", "scipy", "statsmodels", "matplotlib", "pandas", "torch")
    code = (
        "import sys\n"
        "from typer.main import get_command\n"
        "from cdsanalysis.cli import app\n"
        "get_command(app)\n"  # every command's parameters, as --help builds them
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_plot_names_its_run_by_id_and_refuses_an_unknown_one(flat_store, tmp_path):
    out = str(tmp_path / "h")
    bad = _cli("plot", flat_store, "--kind", "histogram", "--run", "zzzzzz", "--out", out, code=2)
    assert "no run id starts with 'zzzzzz'" in bad.output
    ids = [str(r) for r in open_runs(flat_store).run.values]
    short = _cli(
        "plot", flat_store, "--kind", "histogram", "--run", ids[0][:3], "--out", out, code=2
    )
    assert "at least 6 of its first characters" in short.output


def test_validate_prints_the_envelope_and_names_runs_by_id(flat_store):
    envelope = json.loads(_cli("validate", flat_store, "--json").stdout)
    assert list(envelope) == list(ENVELOPE_KEYS) and envelope["command"] == "validate"
    assert envelope["settings"] == {"store": str(flat_store), "deep": False}
    assert envelope["result"]["valid"] is True and envelope["result"]["failed_runs"] == []
    assert envelope["warnings"] == []
