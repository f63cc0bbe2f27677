"""Readers for record files (jsonl, csv, parquet, txt) and Hugging Face datasets.

Every reader yields ``(row, record)`` with a 1-based row number (the line for jsonl/txt, the data row for csv and
parquet, the index for HF datasets), so every later error can name the file and the row.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlhf.errors import DataError

FORMATS = ("jsonl", "csv", "parquet", "txt")
SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
            ".parquet": "parquet", ".pq": "parquet", ".txt": "txt"}


class DropReport:
    """Counts records dropped by reason, so nothing disappears silently; logged as ``data/dropped_<reason>``."""

    def __init__(self, source: str):
        self.source = source
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, where)

    def metrics(self, prefix: str = "data") -> dict[str, float]:
        out = {f"{prefix}/kept": float(self.kept)}
        out.update({f"{prefix}/dropped_{reason}": float(n) for reason, n in sorted(self.dropped.items())})
        return out

    def summary(self) -> str:
        if not self.dropped:
            return f"{self.source}: {self.kept} records kept, none dropped"
        parts = ", ".join(f"{n} {reason} (first: {self.examples[reason]})" for reason, n in self.dropped.items())
        return f"{self.source}: {self.kept} records kept; dropped {sum(self.dropped.values())}: {parts}"


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in FORMATS:
            raise DataError(f"{path}: unknown file type '{fmt}'; use one of {', '.join(FORMATS)} or auto")
        return fmt
    suffix = Path(path.stem).suffix if path.suffix.lower() == ".gz" else path.suffix  # train.jsonl.gz -> .jsonl
    try:
        return SUFFIXES[suffix.lower()]
    except KeyError:
        raise DataError(f"{path}: cannot tell the file type from the suffix '{suffix}'; set data.source.file_type "
                        f"(one of {', '.join(FORMATS)})") from None


def read_records(path: str | Path, fmt: str = "auto", text_column: str = "text") -> Iterator[tuple[int, dict]]:
    """Yield ``(row, record)`` from a local file; ``txt`` yields one record ``{text_column: line}`` per line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: file not found (check the path; relative paths are taken from {Path.cwd()})")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; point to a file (or use source.kind=hf for a save_to_disk dir)")
    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        yield from _read_parquet(path)
        return
    opener = gzip.open if path.suffix.lower() == ".gz" else open  # HH-RLHF ships train.jsonl.gz
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="" if fmt == "csv" else None) as handle:  # no BOM
            if fmt == "jsonl":
                yield from _read_jsonl(path, handle)
            elif fmt == "csv":
                yield from _read_csv(path, handle)
            else:
                for row, line in enumerate(handle, start=1):
                    yield row, {text_column: line.rstrip("\n")}
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start}); re-encode the file as UTF-8") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from err


def _read_jsonl(path: Path, handle) -> Iterator[tuple[int, dict]]:
    for row, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {row}: broken JSON ({err.msg} at column {err.colno}); each line must be "
                            f"one JSON object") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {row}: expected a JSON object, got {type(record).__name__}")
        yield row, record


def _read_csv(path: Path, handle) -> Iterator[tuple[int, dict]]:
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(handle, dialect=dialect)
    if reader.fieldnames is None:
        return
    for row, record in enumerate(reader, start=1):
        if None in record:
            raise DataError(f"{path}, row {row}: more fields than the header has ({len(reader.fieldnames)}); "
                            f"quote fields that contain the delimiter")
        yield row, record


def _read_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise DataError(f"{path}: reading parquet needs pyarrow: pip install -e '.[data]'") from err
    try:
        table = pq.read_table(path)
    except Exception as err:
        raise DataError(f"{path}: not a readable parquet file ({err})") from err
    yield from enumerate(table.to_pylist(), start=1)


def _datasets(name_or_path: str):
    try:
        import datasets
    except ImportError as err:
        raise DataError(f"reading the Hugging Face dataset '{name_or_path}' needs the datasets package: "
                        f"pip install -e '.[data]'") from err
    return datasets


def read_hf_dataset(name_or_path: str, split: str = "train", config: str | None = None
                    ) -> Iterator[tuple[int, dict]]:
    """A dataset saved with ``save_to_disk`` (a directory), or a hub/script name passed to ``load_dataset``."""
    datasets = _datasets(name_or_path)
    path = Path(name_or_path).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(path))
            dataset = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            dataset = datasets.load_dataset(name_or_path, config, split=split)
    except KeyError:
        raise DataError(f"Hugging Face dataset '{name_or_path}' has no split '{split}'; set source.hf_split") from None
    except Exception as err:
        raise DataError(f"Hugging Face dataset '{name_or_path}' (config={config}, split={split}) could not be "
                        f"loaded: {err}. Offline? Save it with save_to_disk and pass the directory.") from err
    yield from enumerate(dataset, start=1)


SPLIT_NAMES = {"train": ("train", "train_prefs"), "val": ("validation", "valid", "val", "dev"),
               "test": ("test", "test_prefs")}  # a dataset's split names that mean ours (HF conventions)


def hf_split_names(name_or_path: str, config: str | None = None) -> list[str]:
    """The splits of a Hugging Face dataset (a ``save_to_disk`` directory or a hub name); [] for a single Dataset."""
    datasets = _datasets(name_or_path)
    path = Path(name_or_path).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(path))
            return list(loaded.keys()) if isinstance(loaded, datasets.DatasetDict) else []
        return list(datasets.get_dataset_split_names(name_or_path, config))
    except Exception as err:
        raise DataError(f"Hugging Face dataset '{name_or_path}' (config={config}) could not be opened: {err}. "
                        f"Offline? Save it with save_to_disk and pass the directory.") from err


def dataset_splits(name_or_path: str, config: str | None, split_map: Any, one_split: str) -> dict[str, str] | None:
    """Our split -> the dataset's split: ``split_map`` (``SplitMapConf``) when it names any (every name checked
    against the dataset), else the
    dataset's own train and validation/test splits (``SPLIT_NAMES``) when it has a train split and another. Splits
    left out are cut from train by the caller. None: the dataset has one split (``one_split`` is read and split by
    hash)."""
    available = hf_split_names(name_or_path, config)
    mapping = {ours: getattr(split_map, ours) for ours in SPLIT_NAMES if getattr(split_map, ours)}
    if mapping:
        if "train" not in mapping:
            raise DataError(f"data.source.split_map={mapping} must map 'train' (and optionally 'val', 'test') to the "
                            f"dataset's splits")
        unknown = [v for v in mapping.values() if available and v not in available]
        if unknown:
            raise DataError(f"data.source.split_map: '{name_or_path}' has no split {', '.join(unknown)}; its splits "
                            f"are {', '.join(available)}")
        return mapping
    found = {ours: next((n for n in names if n in available), None) for ours, names in SPLIT_NAMES.items()}
    found = {ours: theirs for ours, theirs in found.items() if theirs}
    return found if "train" in found and len(found) > 1 else None


def require_text(record: dict, column: str, where: str, available: list[str] | None = None) -> Any:
    """The value of a required column, or a DataError naming the row, the column and the columns that exist."""
    if column not in record:
        cols = ", ".join(sorted(map(str, available or record.keys())))
        raise DataError(f"{where}: missing column '{column}' (columns present: {cols}); set the column name in "
                        f"the data config")
    value = record[column]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise DataError(f"{where}: column '{column}' is empty (null)")
    if not isinstance(value, str):
        raise DataError(f"{where}: column '{column}' must be text, got {type(value).__name__} ({value!r:.40})")
    return value


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write to a temporary file and rename: a crash never leaves half a dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
