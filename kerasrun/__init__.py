"""kerasrun: declare a Keras experiment in YAML, train it, keep a run folder."""

# The one place the version is written: pyproject.toml reads it (dynamic version), run.json records it.
# Keep this module free of imports, so reading the version imports nothing.
__version__ = "0.1.0"
