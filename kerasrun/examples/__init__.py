"""Worked examples importable from configs (`kerasrun.examples.<module>:<name>`)."""
