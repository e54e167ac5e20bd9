"""Adaptive CDS search: choose the next data sizes and seeds so the CDS interval shrinks fastest.

The layer above ``runner`` and ``cdsanalysis``: it trains runs with the one and fits the CDS
curve with the other (neither imports it, except ``cds-run --search``, which loads it lazily).

- :mod:`cdssearch.space`: the search grid (a grid file whose size is a range ``{min, max}``).
- :mod:`cdssearch.settings`: :class:`SearchSettings`, every parameter of the design.
- :mod:`cdssearch.design`: the initial design, the stopping rule, the criterion, bisection.
- :mod:`cdssearch.search`: the resumable loop over a run store, recorded in ``search_json``.
- :mod:`cdssearch.cli`: ``cds-run --search cds`` on the ordinary executors.
"""
