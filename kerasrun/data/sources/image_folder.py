"""`source: image_folder`: one subfolder of images per class, decoded by Keras's image_dataset_from_directory into memory.

Keras lists the files and decodes and resizes them (the same tf.data ops a plain Keras script runs);
kerasrun reads that dataset once into one float32 array. The training folder's images are put in the
seeded order Keras's loader gives them with `shuffle=True, seed=seed` (files sorted by class, then
shuffled), so that `train.validation_split` holds out a mix of classes, never the last ones; a
validation or test folder stays in sorted order. From there an image folder is array data like any
other: seeded per-epoch shuffling, exact `steps_per_epoch`, stratified splits, class weights and
byte-identical resume all work as they do for an `.npz` file.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.data import ImageFolderData
from kerasrun.data.arrays import Data, Split
from kerasrun.data.memory import empty_aligned
from kerasrun.data.preprocess import preprocess_element
from kerasrun.data.sources.base import Where, keras_order, split_test
from kerasrun.data.stream import Stream, compact
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.io import not_regular

# The files image_dataset_from_directory reads (its ALLOWLIST_FORMATS), by lower-cased extension.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
SHOWN_BAD = 5  # bad files named in a message; the rest are counted
READ_BATCH = 256  # images per tensor copied out of tf.data (one copy per batch, not per image)


def read(spec: ImageFolderData, where: Where) -> Data:
    """The training folder (and a test folder or a stratified test fraction) as labelled float32 images."""
    notes: list[str] = []
    train, classes = read_folder(spec, where, ("path",), None, notes)
    validation = read_folder(spec, where, ("validation_path",), classes, notes)[0] if spec.validation_path is not None else None
    if spec.test_path is not None:
        test, _ = read_folder(spec, where, ("test_path",), classes, notes)
        return Data(train, validation=validation, test=test, class_names=classes, notes=notes)
    data = split_test(train, spec.test_fraction, stratify=True, where=where) if spec.test_fraction is not None else Data(train)
    return replace(data, validation=validation, class_names=classes, notes=notes)


def read_folder(
    spec: ImageFolderData, where: Where, loc: tuple[Any, ...], classes: list[str] | None, notes: list[str]
) -> tuple[Split | Stream, list[str]]:
    """One folder of class subfolders → Split(images, labels) and the class names (the training folder's, for a test folder).

    The training folder (`path`) comes in Keras's seeded order (`keras_order`), the others sorted.
    """
    from kerasrun._tf import keras, tf

    root = where.resolve_path(getattr(spec, loc[0]))
    found = class_folders(root, where, loc, classes)
    channels = CHANNELS[spec.color_mode]
    height, width = spec.image_size
    count = sum(found.values())
    needed_mb = count * height * width * channels * 4 / 2**20
    names = list(found)
    streamed = needed_mb > spec.memory_limit_mb
    shuffled = loc == ("path",)

    def dataset() -> Any:
        """Keras's own loader: files listed in sorted class order, decoded and resized in parallel, not shuffled."""
        return keras.utils.image_dataset_from_directory(
            str(root),
            labels="inferred",
            label_mode="int",
            class_names=names,
            color_mode=spec.color_mode,
            batch_size=None,
            image_size=(height, width),
            shuffle=False,
            interpolation=spec.interpolation,
            crop_to_aspect_ratio=spec.crop_to_aspect_ratio,
            pad_to_aspect_ratio=spec.pad_to_aspect_ratio,
            verbose=False,
        )

    try:
        source = dataset()
    except ValueError as exc:  # e.g. no images at all; class_folders catches the usual causes first
        raise ConfigError(where.problem(loc, f"Keras cannot read {root}: {exc}")) from None
    paths: list[str] = list(source.file_paths)
    if streamed:
        notes.append(
            f"streaming the {count} images of {root} from disk every epoch: decoded they take {needed_mb:.0f} MB, "
            f"over memory_limit_mb {spec.memory_limit_mb}"
        )
        return stream_folder(paths, names, root, spec, where, loc, notes, shuffled), names
    order = keras_order(len(paths), where.seed) if shuffled else None
    try:
        return decode_all(source, len(paths), (height, width, channels), order), names
    except tf.errors.OpError:
        pass  # a file that can't be decoded: find every one, by name
    bad = undecodable(paths, channels)
    if not bad:  # the failure was not about one file (e.g. a file vanished mid-read): report it as it is
        raise ConfigError(where.problem(loc, f"reading the images of {root} failed; read it again or check the files"))
    refuse_or_note(bad, len(paths), root, spec, where, loc, notes)
    kept = len(paths) - len(bad)
    return decode_all(source.ignore_errors(), kept, (height, width, channels), keras_order(kept, where.seed) if shuffled else None), names


def refuse_or_note(
    bad: list[str], count: int, root: Path, spec: ImageFolderData, where: Where, loc: tuple[Any, ...], notes: list[str]
) -> None:
    """Undecodable images: a located problem naming them (bad_images: refuse), or a note counting the skipped ones."""
    shown = ", ".join(str(Path(p).relative_to(root)) for p in bad[:SHOWN_BAD]) + (
        f" and {len(bad) - SHOWN_BAD} more" if len(bad) > SHOWN_BAD else ""
    )
    if spec.bad_images == "refuse":
        raise ConfigError(
            where.problem(
                loc,
                f"{len(bad)} of {count} images in {root} cannot be decoded: {shown}",
                "fix or delete them, or set data.bad_images: skip",
            )
        )
    notes.append(f"skipped {len(bad)} image(s) of {root} that cannot be decoded: {shown}")


def stream_folder(
    paths: list[str],
    names: list[str],
    root: Path,
    spec: ImageFolderData,
    where: Where,
    loc: tuple[Any, ...],
    notes: list[str],
    shuffled: bool,
) -> Stream:
    """A folder too big for memory as a Stream of Keras's per-file decoder: one checking pass decodes every image, labels come from the paths.

    Its rows are the decodable files in the order the in-memory reader puts them in (Keras's seeded
    order for the training folder), so a split holds the same images either way.
    """
    from kerasrun._tf import tf
    from kerasrun.keras_private import image_loader

    found = undecodable(paths, CHANNELS[spec.color_mode])
    if found:
        refuse_or_note(found, len(paths), root, spec, where, loc, notes)
    bad, number = set(found), {name: index for index, name in enumerate(names)}
    good = [p for p in paths if p not in bad]
    if shuffled:
        good = [good[i] for i in keras_order(len(good), where.seed)]
    # int32 labels, as Keras's loader gives them.
    labels = np.array([number[Path(p).relative_to(root).parts[0]] for p in good], dtype=np.int32)
    size = (spec.image_size[0], spec.image_size[1])
    load = image_loader(size, CHANNELS[spec.color_mode], spec.interpolation, spec.crop_to_aspect_ratio, spec.pad_to_aspect_ratio)
    steps = spec.preprocess

    def make() -> Any:
        """Every decodable image of the folder, in the split's order, decoded, preprocessed."""
        images = tf.data.Dataset.from_tensor_slices((good, labels)).map(lambda p, y: (load(p), y), num_parallel_calls=tf.data.AUTOTUNE)
        return images.map(lambda x, y: preprocess_element(x, y, steps)) if steps else images

    return Stream(make=make, total=len(labels), shuffle_buffer=spec.shuffle_buffer, labels=compact(labels.astype(np.int64)))


def class_folders(
    root: Path,
    where: Where,
    loc: tuple[Any, ...],
    expected: list[str] | None,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    what: str = "images",
) -> dict[str, int]:
    """{class name: image count} of root's sorted subfolders; every problem (no folder, empty class, other classes) at once."""
    if not root.is_dir():
        raise ConfigError(where.problem(loc, f"no such folder: {root}"))
    names, broken = [], []
    with os.scandir(root) as entries:
        for entry in entries:
            try:
                if entry.is_dir():
                    names.append(entry.name)
            except OSError as exc:  # a link loop (ELOOP) or an unreadable link: no class folder Keras could list
                broken.append(f"{entry.name} ({exc.strerror or exc})")
    names.sort()
    problems: list[Problem] = []
    if broken:
        problems.append(
            where.problem(loc, f"{root} has entries that cannot be opened: {', '.join(sorted(broken))}", "remove the broken links")
        )
    if not names:
        problems.append(where.problem(loc, f"{root} has no class subfolders", "put the images of each class in a subfolder of their own"))
        raise ConfigError(problems)
    if expected is not None and names != expected:
        missing, extra = sorted(set(expected) - set(names)), sorted(set(names) - set(expected))
        detail = "; ".join(part for part in (missing and f"missing {missing}", extra and f"not in training {extra}") if part)
        problems.append(where.problem(loc, f"{root} must have the training folder's classes: {detail}"))
    counts: dict[str, int] = {}
    irregular: list[str] = []
    for name in names:
        counts[name], odd = count_files(root / name, extensions)
        irregular += [f"{Path(path).relative_to(root)} ({why})" for path, why in odd]
    if irregular:  # Keras would open them: a FIFO blocks forever, /dev/zero never ends
        shown = ", ".join(irregular[:SHOWN_BAD]) + (f" and {len(irregular) - SHOWN_BAD} more" if len(irregular) > SHOWN_BAD else "")
        problems.append(
            where.problem(
                loc,
                f"{len(irregular)} {what} in {root} are not regular files: {shown}",
                "remove them or replace them with the files themselves",
            )
        )
    problems += [
        where.problem(loc, f"class folder {root / name} has no {what}", f"files ending in {', '.join(extensions)}")
        for name, count in counts.items()
        if count == 0
    ]
    if problems:
        raise ConfigError(problems)
    return counts


def count_files(folder: Path, extensions: tuple[str, ...]) -> tuple[int, list[tuple[str, str]]]:
    """Regular files with these extensions under folder, recursively (Keras's directory loaders read subfolders of a class
    too), and the (path, why) of those that are not regular files — FIFOs, devices, dangling or looping links."""
    count, irregular = 0, []
    for parent, _, files in os.walk(folder):
        for name in files:
            if not name.lower().endswith(extensions):
                continue
            path = os.path.join(parent, name)
            why = not_regular(path)
            if why is None:
                count += 1
            else:
                irregular.append((path, why))
    return count, irregular


def decode_all(dataset: Any, count: int, shape: tuple[int, int, int], order: np.ndarray | None = None) -> Split:
    """Read (image, label) pairs into one aligned float32 array and an int64 label vector; row j is image order[j] when given."""
    x = empty_aligned((count, *shape), np.float32)
    y = np.empty(count, np.int64)
    # Where each image read (in file order) goes: written in place, never a second copy of the array.
    at = np.arange(count) if order is None else np.argsort(order)
    filled = 0
    for images, labels in dataset.batch(READ_BATCH).as_numpy_iterator():
        if filled + len(images) > count:  # Keras listed one number of files and decoded another: never train on a partial read
            raise RuntimeError(f"read over {filled + len(images) - 1} images, expected {count}")
        rows = at[filled : filled + len(images)]
        x[rows] = images
        y[rows] = labels
        filled += len(images)
    if filled != count:  # Keras listed one number of files and decoded another: never train on a partial read
        raise RuntimeError(f"read {filled} images, expected {count}")
    return Split(x, y)


def undecodable(paths: list[str], channels: int) -> list[str]:
    """The files TensorFlow's image decoder (the one Keras uses) rejects, in file order."""
    from kerasrun._tf import tf

    files = tf.constant(paths)

    def decode(index: Any) -> Any:
        image = tf.image.decode_image(tf.io.read_file(files[index]), channels=channels, expand_animations=False)
        return index, tf.size(image)

    decoded = tf.data.Dataset.range(len(paths)).map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    good = {int(index) for index, _ in decoded.as_numpy_iterator()}
    return [path for index, path in enumerate(paths) if index not in good]
