"""Use ONE finished run: evaluate, predict and export its saved model."""
