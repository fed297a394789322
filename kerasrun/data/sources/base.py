"""What every reader gets besides its own config section, and what several readers share."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.schema import Config
from kerasrun.config.urls import url_of
from kerasrun.data.arrays import Data
from kerasrun.data.peers import ALONE, Peers
from kerasrun.errors import ConfigError, Problem
from kerasrun.rundir.remote import download_tree, glob, local_copy, remove_at_exit


@dataclass(frozen=True)
class Where:
    """A reader's view of the rest of the config: where its keys are, how its paths resolve, and the seed."""

    locate: Callable[[tuple[Any, ...], str, str | None], Problem]
    resolve_path: Callable[[str], Path]  # a path from the data section, relative to the config file's folder; a URL's local copy
    seed: int
    peers: Peers = ALONE  # multi-worker: the workers reading the data together (a reader may share its checks with them)

    @classmethod
    def of(cls, config: Config, peers: Peers = ALONE) -> Where:
        """The view of `config`'s data section (read by `peers` together)."""
        return cls(locate=config.problem, resolve_path=lambda value: local_path(config, value), seed=config.seed, peers=peers)

    def problem(self, loc: tuple[Any, ...], message: str, hint: str | None = None) -> Problem:
        """A problem at `data.<loc>` in the config file."""
        return self.locate(("data", *loc), message, hint)


def local_path(config: Config, value: str) -> Path:
    """A data path as a local file or folder: relative to the config's folder, or a URL's copy fetched with tf.io.gfile.

    Every reader then reads a local file as it always does (NumPy, the csv module, Keras's folder loaders).
    """
    url = url_of(value)
    if url is None:
        return config.resolve_path(value)
    if any(c in url for c in "*?["):  # a glob (TFRecord shards): every match fetched into one folder, the glob kept below it
        folder = Path(tempfile.mkdtemp(prefix="kerasrun-remote-"))
        remove_at_exit(folder)
        for index, match in enumerate(glob(url)):  # numbered folders: the local matches sort as the remote ones do
            download_tree(match, folder / f"{index:06d}" / match.rsplit("/", 1)[-1])
        return folder / "*" / url.rsplit("/", 1)[-1]
    return local_copy(url)


def keras_order(count: int, seed: int) -> np.ndarray:
    """The seeded order Keras's directory loaders give `count` files in (shuffle=True, seed=seed): row j is file order[j].

    `image_dataset_from_directory` and `text_dataset_from_directory` list the files sorted by class and
    then shuffle them with `np.random.RandomState(seed).shuffle`; a permutation of arange from the
    same generator is that shuffle. Sources whose natural order is by class take it before any split,
    so a last-fraction split never holds out the last classes.
    """
    return np.random.RandomState(seed).permutation(count)


def split_test(split: Any, fraction: float, stratify: bool, where: Where) -> Data:
    """Hold out a seeded test fraction (stratified by label when asked) of a Split or a Stream: the same rows for both."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(split))
    try:
        train_index, test_index = train_test_split(
            index, test_size=fraction, random_state=where.seed, stratify=split.y if stratify else None
        )
    except ValueError as exc:  # too few samples (or of one class) for this fraction
        raise ConfigError(
            where.problem(("test_fraction",), f"cannot hold out a test fraction of {fraction} from {len(split)} samples: {exc}")
        ) from None
    return Data(split.take(np.sort(train_index)), test=split.take(np.sort(test_index)))
