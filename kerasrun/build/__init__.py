"""A validated config → a compiled `keras.Model`: the registry of Keras objects, the model graph, its checks, adapt, init_from."""
