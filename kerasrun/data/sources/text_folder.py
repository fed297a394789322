"""`source: text_folder`: one subfolder of .txt files per class, read by Keras's text_dataset_from_directory into memory.

Each text becomes one element of an array of Python bytes objects (no fixed-width padding), labelled
by its class folder in sorted order — what a model with a `dtype: string` input and an adapted
`TextVectorization` layer takes. The training folder's texts come in the seeded order
`text_dataset_from_directory(shuffle=True, seed=seed)` gives them, so `train.validation_split` holds
out a mix of classes; validation and test folders stay sorted. From there a text folder is array
data like any other.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.data import TextFolderData
from kerasrun.data.arrays import Data, Split
from kerasrun.data.sources.base import Where, keras_order, split_test
from kerasrun.data.sources.image_folder import class_folders
from kerasrun.errors import ConfigError, first_line

SHOWN_BAD = 5  # files named in a message; the rest are counted

TEXT_EXTENSIONS = (".txt",)  # what text_dataset_from_directory reads


def read(spec: TextFolderData, where: Where) -> Data:
    """The training folder (and validation and test folders, or a stratified test fraction) as texts and labels."""
    train, classes = read_folder(spec, where, ("path",), None)
    validation = read_folder(spec, where, ("validation_path",), classes)[0] if spec.validation_path is not None else None
    if spec.test_path is not None:
        return Data(train, validation=validation, test=read_folder(spec, where, ("test_path",), classes)[0], class_names=classes)
    data = split_test(train, spec.test_fraction, stratify=True, where=where) if spec.test_fraction is not None else Data(train)
    return replace(data, validation=validation, class_names=classes)


def read_folder(spec: TextFolderData, where: Where, loc: tuple[Any, ...], classes: list[str] | None) -> tuple[Split, list[str]]:
    """One folder of class subfolders → Split(texts, labels) and the class names: the training folder (`path`) in Keras's seeded order."""
    from kerasrun._tf import keras, tf

    root = where.resolve_path(getattr(spec, loc[0]))
    found = class_folders(root, where, loc, classes, TEXT_EXTENSIONS, "text files")
    files = [  # class_folders refused every entry that is not a regular file; links to folders are not followed, as Keras does
        Path(parent, file)
        for name in found
        for parent, _, names in sorted(os.walk(root / name))
        for file in sorted(names)
        if file.lower().endswith(TEXT_EXTENSIONS)
    ]
    size_mb = sum(path.stat().st_size for path in files) / 2**20
    if size_mb > spec.memory_limit_mb:
        raise ConfigError(
            where.problem(
                ("memory_limit_mb",), f"the {len(files)} texts of {root} take {size_mb:.0f} MB, over memory_limit_mb {spec.memory_limit_mb}"
            )
        )
    names = list(found)
    try:
        dataset = keras.utils.text_dataset_from_directory(
            str(root), labels="inferred", label_mode="int", class_names=names, batch_size=None, shuffle=False, max_length=spec.max_length
        )
        texts, labels = [], []
        for text, label in dataset.as_numpy_iterator():
            texts.append(text)
            labels.append(label)
    except (ValueError, tf.errors.OpError) as exc:
        raise ConfigError(where.problem(loc, f"Keras cannot read the texts of {root}: {first_line(exc)}")) from None
    texts = decoded(texts, files, spec, where, loc, root)
    x = np.empty(len(texts), dtype=object)
    x[:] = texts  # bytes objects, one per text: no padding to the longest
    split = Split(x, np.array(labels, dtype=np.int64))
    return (split.take(keras_order(len(split), where.seed)) if loc == ("path",) else split), names


def decoded(texts: list[bytes], files: list[Path], spec: TextFolderData, where: Where, loc: tuple[Any, ...], root: Path) -> list[bytes]:
    """The texts as UTF-8 bytes (what TensorFlow's string ops take), decoded from data.encoding; every file that isn't, by name."""
    try:
        utf8 = codecs.lookup(spec.encoding).name == "utf-8"
    except LookupError:
        raise ConfigError(
            where.problem(("encoding",), f"unknown text encoding `{spec.encoding}`", "e.g. utf-8, latin-1, utf-16, cp1252")
        ) from None
    out, bad = [], []
    for text in texts:
        try:
            # With max_length Keras cuts texts by bytes, maybe inside a character: that last partial one is dropped.
            value = codecs.getincrementaldecoder(spec.encoding)().decode(text, final=spec.max_length is None)
        except UnicodeDecodeError as exc:
            bad.append((text, exc.start))
            continue
        out.append(text if utf8 else value.encode("utf-8"))
    if bad:
        named = [f"{source_of(text, files, spec.max_length, root)} (byte {start})" for text, start in bad[:SHOWN_BAD]]
        shown = ", ".join(named) + (f" and {len(bad) - SHOWN_BAD} more" if len(bad) > SHOWN_BAD else "")
        raise ConfigError(
            where.problem(
                loc,
                f"{len(bad)} of {len(texts)} texts in {root} are not {spec.encoding} text: {shown}",
                "set data.encoding to theirs (e.g. latin-1, utf-16), or save them as UTF-8",
            )
        )
    return out


def source_of(text: bytes, files: list[Path], max_length: int | None, root: Path) -> str:
    """The file (relative to root) a text Keras read came from: Keras's dataset keeps no paths, so the bytes tell."""
    for path in files:
        if path.read_bytes()[:max_length] == text:
            return str(path.relative_to(root))
    return "a file"
