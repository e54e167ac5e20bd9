"""Importers: runs logged elsewhere (TensorBoard, W&B, tables, authors' logs) into run stores."""
