"""Built-in grids (``cds-run`` without ``--grid`` runs quickstart.yaml)."""
