"""kerasrun's own Keras callbacks: run-folder records, progress, checkpoints."""
