"""TFRecord shards read by file: a worker's share is its own files, each record still known by its row in the whole source,
so the splits (held-out test, validation) stay the single process's; the checking pass reads every record once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SHARDED, SIZES, write_records

from kerasrun.config.load import load_config
from kerasrun.data import Stream, load_data
from kerasrun.data.peers import Peers
from kerasrun.data.stream import worker_share


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config and its five shards."""
    folder = tmp_path_factory.mktemp("sharded")
    write_records(folder / "shards")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(SHARDED, sort_keys=False))
    return path


def numbers(dataset: Any) -> list[int]:
    """The example numbers (x[0]) of a dataset of (x, y) elements, in its order."""
    return [int(x[0]) for x, _ in dataset.as_numpy_iterator()]


def test_the_labels_kept_are_each_rows_label_in_the_order_the_rows_are_read(config: Path) -> None:
    data = load_data(load_config(config, ["data.test_fraction=null", "train.validation_split=null"]))
    assert isinstance(data.train, Stream) and data.train.labels is not None
    read = [int(y) for _, y in data.train.make().as_numpy_iterator()]
    assert data.train.labels.tolist() == read and len(read) == sum(SIZES)


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_each_workers_share_is_whole_files_and_together_exactly_the_split(config: Path, workers: int) -> None:
    data = load_data(load_config(config))
    source = list(data.train.make().as_numpy_iterator())  # every row of the source, in its order: row -> (x, y)
    splits = {name: set(numbers(getattr(data, name).elements())) for name in ("train", "validation", "test")}
    assert sum(map(len, splits.values())) == sum(SIZES) and not (splits["train"] & splits["validation"])
    shares = [worker_share(data.train, Peers(index, workers)) for index in range(workers)]
    assert all(share is not None for share in shares)
    seen: list[int] = []
    for index, share in enumerate(shares):
        assert share is not None
        files = range(index, len(SIZES), workers)
        first = [sum(SIZES[:f]) for f in files]  # each file's examples are numbered from here, in writing order
        held = set(numbers(share.elements()))
        assert held == {n for f, start in zip(files, first, strict=True) for n in range(start, start + SIZES[f])} & splits["train"]
        assert len(share) == len(held)
        for row, (x, y) in share.make().as_numpy_iterator():  # each record carries its row in the source
            assert int(x[0]) == int(source[row][0][0]) and int(y) == int(source[row][1])
        seen += held
    assert sorted(seen) == sorted(splits["train"])  # no row twice, none lost


def test_file_sharding_needs_as_many_files_as_workers_and_a_tfrecord_stream(config: Path, write_config) -> None:
    data = load_data(load_config(config))
    assert worker_share(data.train, Peers(0, len(SIZES) + 1)) is None  # fewer files than workers: by row (data), as before
    assert worker_share(data.train, Peers(0, 1)) is None  # one process reads everything
    arrays = load_data(load_config(write_config()))  # synthetic arrays
    assert worker_share(arrays.train, Peers(0, 2)) is None
