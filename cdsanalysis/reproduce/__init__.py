"""``python -m cdsanalysis.reproduce STORE_DIR --out DIR``: every figure and table of
REPRODUCTION.md, regenerated from the run stores.

The manifest (:mod:`cdsanalysis.reproduce.manifest`, ``examples/reproduce/manifest.yaml``)
names one entry per claim: its store under ``STORE_DIR``, the grid that trains it, its kind
and the analysis settings. Each kind has one module (:mod:`~cdsanalysis.reproduce.samplewise`,
:mod:`~cdsanalysis.reproduce.modelwise`, :mod:`~cdsanalysis.reproduce.groups_table`,
:mod:`~cdsanalysis.reproduce.ungrokking`) that computes its numbers with the package's
analysis functions (never a second estimator) and writes ``<entry>.md`` and
``<entry>_<figure>.png``; :mod:`~cdsanalysis.reproduce.command` runs the manifest and writes
``index.json`` with every number. Like the rest of :mod:`cdsanalysis`, no torch is imported.
"""

from __future__ import annotations
