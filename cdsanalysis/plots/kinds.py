"""The figure kinds of ``cds-analyze plot --kind`` (no matplotlib import here)."""

#: Figure kinds, each drawn by the module of the same name (``cds`` by ``cds_curve``).
KINDS = ("stepwise", "curves", "landscape", "trend", "histogram", "cds", "survival", "delay_law")
