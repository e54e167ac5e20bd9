"""Model-wise CDS (:mod:`cdsanalysis.modelwise`) over a store whose models also carry a label."""

from __future__ import annotations

import numpy as np
import pytest

from cdsanalysis import open_runs
from cdsanalysis.modelwise import cds_by_model, model_coordinates
from tests.cdsanalysis.conftest import Curves, write_store

STEPS = 200
#: Seeds 0-2 are the small model, 3-5 the large one; the planted threshold is (100, 200] for the
#: small model and (200, 300] for the large one.
SMALL, LARGE = (0, 1, 2), (3, 4, 5)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    c = Curves()
    runs = {}
    for n in (100, 200, 300):
        for seed in SMALL:
            runs[(n, seed)] = c.flat(STEPS, 0.3 if n == 100 else 0.97)
        for seed in LARGE:
            runs[(n, seed)] = c.flat(STEPS, 0.97 if n == 300 else 0.3)
    path = write_store(tmp_path_factory.mktemp("modelwise") / "two.zarr", runs, STEPS)
    ds = open_runs(str(path))
    large = np.isin(ds["seed"].values, LARGE)
    # as a grid's `variants` write them: the width and a label naming each model
    return ds.assign_coords(
        width=("run", np.where(large, 32, 16)),
        label=("run", np.where(large, "size32", "size16").astype(object)),
    )


def test_a_label_that_names_each_model_is_pooled_with_it(two_models):
    assert model_coordinates(two_models, "width") == ("label",)
    out = cds_by_model(two_models, by="width", eps=0.9, n_resamples=50)
    assert out.attrs["model_coordinates"] == ["label"]
    assert out["cds_bracket_low"].values.tolist() == [100, 200]
    assert out["cds_bracket_high"].values.tolist() == [200, 300]
    assert out["n_runs"].values.tolist() == [9, 9]


def test_a_setting_that_varies_within_a_model_is_still_refused(two_models):
    lr = np.where(two_models["seed"].values == 1, 3e-3, 1e-3)  # one seed of each model differs
    mixed = two_models.assign_coords(lr=("run", lr))
    assert "lr" not in model_coordinates(mixed, "width")
    with pytest.raises(ValueError, match=r"differ in \['lr'\]"):
        cds_by_model(mixed, by="width", eps=0.9, n_resamples=50)


def test_a_setting_that_changes_with_the_model_is_pooled_and_named_in_a_warning(two_models):
    lr = np.where(np.isin(two_models["seed"].values, LARGE), 3e-3, 1e-3)
    confounded = two_models.assign_coords(lr=("run", lr))
    assert set(model_coordinates(confounded, "width")) == {"label", "lr"}
    out = cds_by_model(confounded, by="width", eps=0.9, n_resamples=50)
    named = [w for w in out.attrs["warnings"] if "also differ in" in w]
    assert named == [
        "the models also differ in ['lr'] (one value per width): the trend is against width "
        "and lr together"
    ]
    # the label alone names the models: no such warning
    plain = cds_by_model(two_models, by="width", eps=0.9, n_resamples=50)
    assert not [w for w in plain.attrs.get("warnings", []) if "also differ in" in w]
