"""YAML → a validated `Config`: the YAML reader, composition (`extends`, variables), the schema, loading. Never imports TensorFlow."""
