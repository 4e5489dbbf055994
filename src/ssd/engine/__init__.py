"""Training and evaluation loops, checkpoints and run logging."""
