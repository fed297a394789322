"""kerasrun: declare a Keras experiment in YAML, train it, keep a run folder."""

__version__ = "0.1.0"
