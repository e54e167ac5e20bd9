"""``cds-analyze watch --once``: a snapshot of every run, read from the store only."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from cdsanalysis.cli import app


def test_watch_once_shows_every_run_as_far_as_it_got(three_regime_ds):
    store = three_regime_ds.encoding["source"]
    out = CliRunner().invoke(app, ["watch", store, "--once", "--json", "--resamples", "100"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)["result"]["runs"]
    assert len(rows) == 12
    by_key = {(r["n_samples"], r["seed"]): r for r in rows}
    running = by_key[(600, 0)]  # planted: 50 steps, memorised at 21, test 0.99 from step 31
    assert running["status"] == "running" and running["steps_done"] == 50
    assert running["steps_planned"] == 200
    assert running["train_accuracy"] == 1.0
    assert math.isclose(running["test_accuracy"], 0.99, rel_tol=1e-6)  # last evaluation, step 41
    assert running["regime"] == "generalised at 31 (so far)"
    pending = by_key[(600, 1)]
    assert pending["status"] == "pending" and pending["steps_done"] == 0
    assert pending["train_accuracy"] is None or math.isnan(pending["train_accuracy"])
    assert pending["regime"] == "-"
    assert by_key[(300, 1)]["regime"] == "sufficiency"
    text = CliRunner().invoke(app, ["watch", store, "--once", "--resamples", "100"]).output
    assert "10/12 runs finished" in text and "generalised at 31 (so far)" in text
