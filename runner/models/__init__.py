"""Models: HF models built from config, behind the small interface the trainer uses."""
