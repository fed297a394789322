"""`source: tfrecord`: tf.train.Example records in TFRecord shards, parsed by a declared feature spec and streamed while training.

The shards are read interleaved (`parallel_files` at once) in a fixed order, so every pass yields
the examples in the same order; one checking pass per split at load time parses every record once
(naming the shard of the first one that fails), counts them and keeps each example's class when the
single target is an integer scalar — under multi-worker each worker checks its share of the shards and
the counts are combined (kerasrun.data.peers). From there a TFRecord split is a `Stream`, as a
streamed CSV is; it knows each record's row, so a worker can train on its own shards alone.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
import struct
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasrun.config.data import TfRecordData
from kerasrun.data.arrays import Data
from kerasrun.data.peers import Peers
from kerasrun.data.preprocess import preprocess_element
from kerasrun.data.sources.base import Where, split_test
from kerasrun.data.stream import Shards, Stream, compact
from kerasrun.errors import ConfigError, first_line

COMPRESSION = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}
CHECK_BATCH = 1024  # records parsed per call in the checking pass


def read(spec: TfRecordData, where: Where) -> Data:
    """The training shards (and validation and test shards, or a held-out fraction) as Streams."""
    train = stream_shards(spec, where, ("files",))
    validation = stream_shards(spec, where, ("validation_files",)) if spec.validation_files is not None else None
    if spec.test_files is not None:
        return Data(train, validation=validation, test=stream_shards(spec, where, ("test_files",)))
    data = split_test(train, spec.test_fraction, stratify=False, where=where) if spec.test_fraction else Data(train)
    return replace(data, validation=validation)


def shard_paths(spec: TfRecordData, where: Where, loc: tuple[Any, ...]) -> list[str]:
    """Every file the key's globs match, sorted within each glob; a glob matching nothing is a problem."""
    value = getattr(spec, loc[0])
    patterns = [value] if isinstance(value, str) else list(value)
    paths: list[str] = []
    for index, pattern in enumerate(patterns):
        matched = sorted(p for p in glob.glob(str(where.resolve_path(pattern))) if Path(p).is_file())
        if not matched:
            at = loc if isinstance(value, str) else (*loc, index)
            raise ConfigError(where.problem(at, f"no file matches {where.resolve_path(pattern)}"))
        paths += [p for p in matched if p not in paths]
    return paths


def stream_shards(spec: TfRecordData, where: Where, loc: tuple[Any, ...]) -> Stream:
    """One split's shards as a Stream, after a checking pass over every shard (shared between the workers, see Peers)."""
    from kerasrun._tf import tf

    paths = shard_paths(spec, where, loc)
    wanted = {name: tf.io.FixedLenFeature(feature.shape, tf.as_dtype(feature.dtype)) for name, feature in spec.features.items()}

    def parse(records: Any) -> Any:
        """Serialized Examples → a dict of features (a batch of them for a batch of records)."""
        return tf.io.parse_example(records, wanted)

    def arrange(features: dict[str, Any]) -> tuple[Any, ...]:
        """A parsed example → (x, y[, sample_weight]) as the model takes them: one tensor, or by name."""
        x = features[spec.inputs[0]] if len(spec.inputs) == 1 else {name: features[name] for name in spec.inputs}
        y = features[spec.targets[0]] if len(spec.targets) == 1 else {name: features[name] for name in spec.targets}
        if spec.preprocess:
            x, y = preprocess_element(x, y, spec.preprocess)
        return (x, y) if spec.sample_weight is None else (x, y, features[spec.sample_weight])

    def open_shard(path: Any) -> Any:
        return tf.data.TFRecordDataset(path, compression_type=COMPRESSION[spec.compression])

    def interleave(shards: Any, count: int, read: Any) -> Any:
        # The same order every pass: splits by row and resume rely on it.
        return shards.interleave(
            read, cycle_length=min(spec.parallel_files, count), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    def records(files: list[str]) -> Any:
        return interleave(tf.data.Dataset.from_tensor_slices(files), len(files), open_shard)

    def make() -> Any:
        """Every example of the split, in the fixed interleaved order."""
        return records(paths).batch(CHECK_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch().map(arrange)

    target = spec.features[spec.targets[0]] if len(spec.targets) == 1 else None
    classes = target is not None and target.dtype == "int64" and not target.shape
    label = spec.targets[0] if classes else None
    counts, found = check_shards(paths, records, parse, spec, where, loc, label)
    positions = interleaved_positions(counts, min(spec.parallel_files, len(paths)))
    labels = None if label is None else source_labels(found, positions, where.peers)

    def numbered(chosen: list[int]) -> Any:
        """(row in the source, example) for the shards `chosen` only, interleaved among themselves: a worker's share."""
        rows = tf.constant(np.concatenate([positions[f] for f in chosen]))
        starts = np.cumsum([0] + [int(counts[f]) for f in chosen])
        table = tf.data.Dataset.from_tensor_slices(([paths[f] for f in chosen], starts[:-1], starts[1:]))
        pairs = interleave(
            table,
            len(chosen),
            lambda path, begin, end: tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(rows[begin:end]), open_shard(path))),
        )
        parsed = pairs.batch(CHECK_BATCH).map(lambda row, batch: (row, parse(batch)), num_parallel_calls=tf.data.AUTOTUNE)
        return parsed.unbatch().map(lambda row, features: (row, arrange(features)))

    if spec.preprocess and (len(spec.inputs) > 1 or len(spec.targets) > 1):
        raise ConfigError(where.problem(("preprocess",), "preprocess steps apply to single-array features and targets"))
    try:
        _ = make().element_spec  # traces the preprocess steps: a reshape that can't apply fails here, not in training
    except ValueError as exc:
        raise ConfigError(where.problem(("preprocess",), f"cannot apply to the examples: {first_line(exc)}")) from None
    total = int(counts.sum())
    return Stream(make=make, total=total, shuffle_buffer=spec.shuffle_buffer, labels=labels, shards=Shards(paths, positions, numbered))


def check_shards(
    paths: list[str], records: Any, parse: Any, spec: TfRecordData, where: Where, loc: tuple[Any, ...], label: str | None
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Each shard's examples counted (and `label` read) in one pass; under multi-worker each worker checks every count-th shard.

    Returns the count of every shard and the labels of the shards this process read. A shard that
    fails on any worker is checked again by every worker, so that all of them report the same problem.
    """
    peers = where.peers
    if peers.count == 1:
        return check_files(paths, list(range(len(paths))), records, parse, spec, where, loc, label)
    status, found = np.zeros(len(paths), np.int64), dict[int, np.ndarray]()
    for index in range(peers.index, len(paths), peers.count):
        try:
            counts, labels = check_files(paths, [index], records, parse, spec, where, loc, label)
        except ConfigError:
            status[index] = -1
            continue
        status[index], found = counts[index] + 1, {**found, **labels}
    status = peers.sum(status)  # 0 is never left: every shard was checked by one worker (count + 1, or -1)
    if (status < 0).any():
        check_files(paths, [int(i) for i in np.flatnonzero(status < 0)], records, parse, spec, where, loc, label)  # raises
        raise ConfigError(where.problem(loc, "a shard changed while the workers were checking it"))
    counts = status - 1
    if counts.sum() == 0:
        raise ConfigError(where.problem(loc, "the files hold no examples"))
    return counts, found


def check_files(
    paths: list[str], chosen: list[int], records: Any, parse: Any, spec: TfRecordData, where: Where, loc: tuple[Any, ...], label: str | None
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Parse every record of the shards `chosen` once: the count of every shard (0 for the others) and each one's `label` values."""
    from kerasrun._tf import tf

    counts, found = np.zeros(len(paths), np.int64), dict[int, np.ndarray]()
    framing = [f"{Path(paths[i]).name}: {why}" for i in chosen if (why := frame_problem(paths[i], spec.compression))]
    if framing:  # before TensorFlow reads them: it allocates what a record's length field says, and crashes on 2**60
        raise ConfigError([where.problem(loc, message, "a shard cut off while copied, or not a TFRecord file") for message in framing])
    for index in chosen:  # shard by shard, so a failure names its file
        path, chunks = paths[index], []
        try:
            for features in records([path]).batch(CHECK_BATCH).map(parse).as_numpy_iterator():
                counts[index] += len(next(iter(features.values())))
                if label is not None:
                    chunks.append(np.asarray(features[label], dtype=np.int64))
                if not spec.allow_nonfinite:
                    for name, values in features.items():
                        if values.dtype.kind == "f" and not np.isfinite(values).all():
                            raise ConfigError(
                                where.problem(
                                    loc,
                                    f"{Path(path).name}: feature `{name}` holds NaN or inf",
                                    "fix the data, or set data.allow_nonfinite: true",
                                )
                            )
        except tf.errors.OpError as exc:
            raise ConfigError(where.problem(loc, f"cannot read {Path(path).name}: {op_message(exc)}")) from None
        if label is not None:
            found[index] = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    if len(chosen) == len(paths) and counts.sum() == 0:
        raise ConfigError(where.problem(loc, "the files hold no examples"))
    return counts, found


def interleaved_positions(counts: np.ndarray, cycle: int) -> list[np.ndarray]:
    """Each shard's records' rows in the order the interleaved reading yields them, from the counts alone.

    tf.data's own interleave over ranges of the counts gives the order, so it is the order the
    records are read in (the same cycle length, deterministic), without reading them again.
    """
    from kerasrun._tf import tf

    shards = tf.data.Dataset.from_tensor_slices((tf.range(len(counts), dtype=tf.int64), tf.constant(counts, tf.int64)))
    order = shards.interleave(
        lambda shard, count: tf.data.Dataset.range(count).map(lambda _: shard),
        cycle_length=cycle,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    sequence = np.concatenate([np.zeros(0, np.int64), *order.batch(1 << 16).as_numpy_iterator()])
    rows = np.argsort(sequence, kind="stable")  # shard 0's rows in order, then shard 1's, ...
    return np.split(rows, np.cumsum(counts)[:-1])


def source_labels(found: dict[int, np.ndarray], positions: list[np.ndarray], peers: Peers) -> np.ndarray:
    """Every row's label in the source's order, from the shards each worker read (summed over the workers: each row has one reader)."""
    labels = np.zeros(sum(len(rows) for rows in positions), np.int64)
    for shard, values in found.items():
        labels[positions[shard]] = values
    labels = peers.sum(labels)
    return compact(labels) if labels.size and labels.min() >= 0 else labels


def op_message(exc: Exception) -> str:
    """A TensorFlow error reading records, in words: no graph-function names, no iterator chain."""
    text = first_line(exc)
    if "Could not parse example input" in text:
        return "its records are not tf.train.Example protos (written by something other than tf.train.Example.SerializeToString?)"
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:\w+\].*$", "", text)


FRAME_HEADER = 12  # a record: length (uint64), its masked CRC (uint32), the payload, the payload's masked CRC (uint32)
SKIP_CHUNK = 1 << 20


def frame_problem(path: str, compression: str) -> str | None:
    """Why a shard's records are not framed as TFRecord frames that fit in the file, or None when they are.

    Reads only the 12-byte record headers of an uncompressed shard (one pread each, skipping the payloads:
    a buffered file would read 4 KB at every seek, most of the data); a compressed one is decompressed
    once in chunks, so a lying length costs a pass, never memory.
    """
    with open(path, "rb", buffering=0 if compression == "none" else -1) as raw:
        if compression == "none":
            size, offset, number = os.fstat(raw.fileno()).st_size, 0, 0
            while offset < size:
                number += 1
                header = os.pread(raw.fileno(), FRAME_HEADER, offset)  # one small read per record, no seek
                if len(header) < FRAME_HEADER:
                    return f"record {number} (at byte {offset:,}) is cut off: the file ends inside its header"
                (length,) = struct.unpack("<Q", header[:8])
                if length > size - offset - FRAME_HEADER - 4:
                    return f"record {number} (at byte {offset:,}) says it holds {length:,} bytes; the file has {size - offset:,} left"
                offset += FRAME_HEADER + length + 4
            return None
        stream: Any = gzip.GzipFile(fileobj=raw) if compression == "gzip" else ZlibReader(raw)
        number = 0
        try:
            while header := stream.read(FRAME_HEADER):
                number += 1
                if len(header) < FRAME_HEADER:
                    return f"record {number} is cut off: the data ends inside its header"
                (length,) = struct.unpack("<Q", header[:8])
                left = length + 4
                while left:
                    chunk = stream.read(min(left, SKIP_CHUNK))
                    if not chunk:
                        return f"record {number} says it holds {length:,} bytes; the data ends before that"
                    left -= len(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            return f"cannot be decompressed as {compression} (record {number + 1}): {exc}"
    return None


class ZlibReader:
    """A file of zlib-compressed data (TFRecord's ZLIB compression), read decompressed `n` bytes at a time."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.inflate = zlib.decompressobj()
        self.buffer = b""

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n and not self.inflate.eof:
            compressed = self.inflate.unconsumed_tail or self.raw.read(SKIP_CHUNK)  # what the last call left first
            if not compressed:
                break
            self.buffer += self.inflate.decompress(compressed, SKIP_CHUNK)  # bounded output: a zlib bomb costs time, not memory
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out
