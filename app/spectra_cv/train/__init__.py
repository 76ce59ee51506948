"""Training: configuration, in-memory data, the loop, checkpoints and presets."""
