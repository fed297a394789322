"""The plain Keras script a user would write for MNIST as PNG folders: image_dataset_from_directory with its defaults + fit.

    python bench/plain_image_folder.py IMAGES_DIR [--epochs 2]

Prints one JSON line: fit_s (model.fit's wall time), epochs, test_accuracy.
"""

from __future__ import annotations

import argparse
import json
import time

import keras

parser = argparse.ArgumentParser()
parser.add_argument("images")
parser.add_argument("--epochs", type=int, default=2)
args = parser.parse_args()

keras.utils.set_random_seed(0)
train = keras.utils.image_dataset_from_directory(f"{args.images}/train", image_size=(28, 28), color_mode="grayscale", seed=0)
test = keras.utils.image_dataset_from_directory(f"{args.images}/test", image_size=(28, 28), color_mode="grayscale", shuffle=False)
model = keras.Sequential(
    [
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(train, epochs=args.epochs, verbose=0)
fit_s = time.perf_counter() - start
_, accuracy = model.evaluate(test, verbose=0)
print(json.dumps({"fit_s": fit_s, "epochs": args.epochs, "test_accuracy": accuracy}))
