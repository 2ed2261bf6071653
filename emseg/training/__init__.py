"""Training: the trainer (its loop, validation and resumable checkpoints) and the U-Net border weights."""

