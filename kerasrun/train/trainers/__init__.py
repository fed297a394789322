"""Training loops. Each takes the same datasets and callbacks and produces the same history keys."""
