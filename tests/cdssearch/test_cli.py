"""The real wiring: ``cds-run --search cds`` trains modular-addition runs round by round."""

import json
import subprocess
import sys

from cdsanalysis.store import open_runs
from runner.store import RunStore

CDS_RUN = [sys.executable, "-c", "from runner.cli import main; main()"]

GRID = """\
name: tiny-search
task: {name: modular_addition, p: 11}
n_samples: {min: 20, max: 90}
model: {family: gpt, width: 16, depth: 1, heads: 2}
optimizer: {name: adamw, lr: 0.01, weight_decay: 1.0}
steps: 60
eval_every: 10
flush_every: 30
histogram: {every: 1000, groups: [embedding], bins: 4}
"""


def test_cds_run_search_trains_rounds_into_one_store_and_records_them(tmp_path):
    grid = tmp_path / "search.yaml"
    grid.write_text(GRID)
    out = tmp_path / "s.zarr"
    args = [
        *CDS_RUN,
        "--grid",
        str(grid),
        "--out",
        str(out),
        "--search",
        "cds",
        "--target-width",
        "0.01",
        "--budget-runs",
        "10",
        "--quiet",
        "--analysis",
        "eps=0.5",
        "--analysis",
        "aggregate=final",
    ]
    first = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "round 0 (initial): 8 runs" in first.stderr
    ds = open_runs(str(out))
    record = json.loads(RunStore(str(out)).root.attrs["search_json"])
    chosen = {tuple(p) for r in record["rounds"] for p in r["runs"]}
    pairs = set(zip(ds["n_samples"].values.tolist(), ds["seed"].values.tolist(), strict=True))
    assert pairs == chosen and ds.sizes["run"] == len(chosen) <= 10
    assert set(ds["status"].values) == {"done"}
    assert record["rounds"][-1]["kind"] == "stop"
    assert record["analysis"]["eps"] == 0.5
    # cds-analyze on the store says when its curve settings are not the search's
    from cdsanalysis.cds_curve import cds_curve
    from cdsanalysis.settings import AnalysisSettings

    plain = cds_curve(ds, AnalysisSettings(eps=0.5, aggregate="final"))
    assert any("adaptive search" in w for w in plain.attrs["warnings"])
    as_searched = cds_curve(
        ds,
        AnalysisSettings(
            eps=0.5,
            aggregate="final",
            curve_links=tuple(record["analysis"]["curve_links"]),
            curve_variance=record["analysis"]["curve_variance"],
        ),
    )
    assert not any("adaptive search" in w for w in as_searched.attrs.get("warnings", []))
    # and so does the regimes report (its warnings are assembled on their own)
    from cdsanalysis.report import regimes_report

    report = regimes_report(ds, AnalysisSettings(eps=0.5, aggregate="final"))
    assert any("--curve-variance constant" in w for w in report["warnings"])


def test_search_options_without_search_are_refused(tmp_path):
    result = subprocess.run(
        [*CDS_RUN, "--target-width", "0.2", "--dry-run"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "apply to --search cds" in result.stderr


def test_search_settings_from_options_name_the_field_and_the_fix():
    import pytest

    from cdssearch.cli import search_settings

    settings = search_settings(
        ("min_bracket_ratio=1.5", "noisy_bracket=top_up", "initial_seeds=3"), 0.3, 20
    )
    assert settings.min_bracket_ratio == 1.5 and settings.noisy_bracket == "top_up"
    assert settings.initial_seeds == 3 and settings.target_width == 0.3
    assert settings.budget_runs == 20
    assert search_settings((), 0.3, None).budget_runs == 48  # the dataclass default
    with pytest.raises(ValueError, match="'min_bracket' is not a search setting.*min_bracket_"):
        search_settings(("min_bracket=1.5",), 0.3, None)
    with pytest.raises(ValueError, match="give it as --budget-runs"):
        search_settings(("budget_runs=5",), 0.3, None)
    with pytest.raises(ValueError, match="name=value"):
        search_settings(("min_bracket_ratio",), 0.3, None)
    with pytest.raises(ValueError, match="noisy_bracket must be"):
        search_settings(("noisy_bracket=sideways",), 0.3, None)


def test_search_setting_reaches_the_recorded_search(tmp_path):
    grid = tmp_path / "search.yaml"
    grid.write_text(GRID)
    out = tmp_path / "s.zarr"
    args = [*CDS_RUN, "--grid", str(grid), "--out", str(out), "--search", "cds"]
    args += ["--target-width", "0.01", "--budget-runs", "4", "--quiet"]
    args += ["--search-setting", "initial_sizes=2", "--search-setting", "ceiling_runs=0"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    record = json.loads(RunStore(str(out)).root.attrs["search_json"])
    assert record["settings"]["initial_sizes"] == 2 and record["settings"]["ceiling_runs"] == 0
    assert len(record["rounds"][0]["runs"]) == 4  # 2 sizes x 2 seeds
    bad = subprocess.run(
        [*CDS_RUN, "--grid", str(grid), "--out", str(tmp_path / "t.zarr"), "--search", "cds",
         "--target-width", "0.1", "--search-setting", "bisection=3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "not a search setting" in bad.stderr
    assert not (tmp_path / "t.zarr").exists()
