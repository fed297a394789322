"""ONE run folder: its file layout, atomic writes and reads, the record and liveness, checkpoints' files, trust. Never imports TensorFlow."""
