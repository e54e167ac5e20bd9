"""Figures of the paper from run stores (matplotlib; one module per figure kind).

Every ``plot_*`` function takes a run store (or an analysis result) and returns a matplotlib
``Figure``; :func:`save_figure` writes it as PNG and PDF. Sizes are for a two-column paper
(``FULL_WIDTH`` = 7 in, ``COLUMN_WIDTH`` = 3.4 in) with 8-pt text, so they stay readable when
placed at 100 %. Importing ``cdsanalysis.plots.common`` selects the Agg backend unless a backend
was already chosen (``MPLBACKEND`` or ``matplotlib.use``).

Modules: ``stepwise`` (Fig. 1B/C), ``curves`` (Fig. 1A, 2A, 7), ``landscape`` (Fig. 4A),
``trend`` (Fig. 4B), ``histogram`` (Fig. 5), ``cds_curve`` (the CDS curve), ``survival``,
``delay_law`` (the delay law across a grid); ``common`` holds the
style and :func:`~cdsanalysis.plots.common.save_figure`. This ``__init__`` imports nothing, so
``cdsanalysis.plots.kinds`` can be read without importing matplotlib.
"""
