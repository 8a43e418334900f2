"""A labelled dataset named the way ``radroute train`` / ``evaluate`` name it, and its reader.

:func:`load_labelled_data` reads any supported source (folder per class, CSV manifest, MedMNIST
``.npz``, DICOM folder + label CSV, saved ``.json`` manifest, shared-set name) with the
commands' options; :class:`DataSource` holds those options for the training and evaluation jobs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from radroute.data.manifest import Manifest
from radroute.data.sources import SHARED_SETS, from_dicom_labels, load_source
from radroute.errors import InvalidConfigError

#: label column options as a mapping ``{task: column}`` or ``"TASK=COLUMN"`` strings
LabelColumns = Mapping[str, str] | Sequence[str]


def parse_label_columns(items: LabelColumns | None) -> dict[str, str]:
    """``{"organ": "label"}`` or ``["organ=label"]`` -> ``{"organ": "label"}``."""
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidConfigError(f"--label-column expects TASK=COLUMN, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _is_csv(data: str) -> bool:
    return Path(data).suffix.lower() == ".csv" or (data in SHARED_SETS and "csv" in SHARED_SETS[data])


def load_labelled_data(data: str | Path, *, dicom_labels: str | Path | None = None,
                       label_columns: LabelColumns | None = None, path_column: str | None = None,
                       patient_column: str | None = None, split_column: str | None = None,
                       filters: Sequence[str] | None = None, task: str | None = None) -> Manifest:
    """The labelled dataset ``data`` as a :class:`Manifest`, from any supported source.

    ``label_columns``, ``path_column``, ``patient_column``, ``split_column`` and ``filters``
    apply to CSV sources and to DICOM folders with ``dicom_labels`` (where ``path_column`` is
    the label CSV's key column); ``task`` names the task of folder and ``.npz`` sources.
    Raises :class:`~radroute.errors.InvalidConfigError` for options the source does not take.
    """
    data = str(data)
    options: dict[str, Any] = {}
    if label_columns:
        options["label_columns"] = parse_label_columns(label_columns)
    if patient_column:
        options["patient_column"] = patient_column
    if split_column:
        options["split_column"] = split_column
    if filters:
        options["filters"] = list(filters)
    if dicom_labels is not None:
        if path_column:
            options["key_column"] = path_column
        return from_dicom_labels(data, dicom_labels, **options)
    if path_column:
        options["path_column"] = path_column
    is_csv = _is_csv(data)
    if options and not is_csv:
        raise InvalidConfigError("--label-column/--path-column/--patient-column/--split-column/--filter "
                                 "apply to CSV sources and --dicom-labels", data)
    if task and not is_csv and Path(data).suffix.lower() != ".json":
        options["task"] = task
    return load_source(data, **options)


@dataclass(kw_only=True)
class DataSource:
    """A labelled dataset: a source and the options :func:`load_labelled_data` reads it with,
    or a :class:`Manifest` already in memory (the options are then unused)."""

    data: str | Path | Manifest
    dicom_labels: Path | None = None
    label_columns: LabelColumns | None = None
    path_column: str | None = None
    patient_column: str | None = None
    split_column: str | None = None
    filters: Sequence[str] | None = None
    task: str | None = None

    @property
    def source_name(self) -> str | None:
        """The source as recorded in packages and reports: the path / set name as given, or
        where an in-memory manifest came from."""
        if isinstance(self.data, Manifest):
            origin = self.data.origin
            return origin.get("shared_set") or origin.get("path")
        return str(self.data)

    def load(self) -> Manifest:
        """The dataset as a :class:`Manifest`."""
        if isinstance(self.data, Manifest):
            return self.data
        return load_labelled_data(self.data, dicom_labels=self.dicom_labels, label_columns=self.label_columns,
                                  path_column=self.path_column, patient_column=self.patient_column,
                                  split_column=self.split_column, filters=self.filters, task=self.task)
