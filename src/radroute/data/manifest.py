"""The in-memory description of a labelled dataset: :class:`Sample` and :class:`Manifest`.

Readers of concrete layouts (folders, CSV, .npz, DICOM) live in :mod:`radroute.data.sources`;
they all produce a :class:`Manifest`.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from radroute.errors import InvalidConfigError

#: split names radroute uses; sources' own names are mapped onto them (``dev`` -> ``val``)
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}

NPZ_PREFIX = "npz:"


def normalise_split(value: Any) -> str | None:
    """Map a source's split name onto ``train``/``val``/``test`` (``None`` when empty)."""
    if value is None:
        return None
    s = str(value).strip()
    if not s or s.lower() in ("nan", "none"):
        return None
    try:
        return SPLIT_ALIASES[s.lower()]
    except KeyError:
        raise InvalidConfigError(f"unknown split name {s!r}; use one of {sorted(SPLIT_ALIASES)}") from None


@dataclass
class Sample:
    """One labelled image.

    ``source`` is a file path, or ``"npz:<key>:<index>"`` for row ``index`` of ``<key>_images``
    in the manifest's ``.npz`` file (:attr:`Manifest.npz`). ``labels`` maps task -> class name;
    a task absent from it means the label is missing.
    """

    source: str
    labels: dict[str, str] = field(default_factory=dict)
    patient_id: str | None = None
    split: str | None = None
    frame: int | None = None

    @property
    def key(self) -> str:
        """A string naming this image uniquely within a manifest (source + frame)."""
        return self.source if self.frame is None else f"{self.source}#{self.frame}"


@dataclass
class Manifest:
    """A labelled dataset: samples plus the ordered class names of every task."""

    samples: list[Sample]
    #: ordered ``{task: [class names]}``; class indices follow this order
    tasks: dict[str, list[str]]
    #: the .npz file that ``npz:`` sources index into, if any
    npz: str | None = None
    #: the dataset's root folder; split files store paths relative to it
    root: str | None = None
    #: where the manifest came from (reader and options), for the model package's data description
    origin: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.samples:
            for task, label in s.labels.items():
                if task not in self.tasks:
                    raise InvalidConfigError(f"sample {s.key} has a label for unknown task {task!r}")
                if label not in self.tasks[task]:
                    raise InvalidConfigError(f"sample {s.key}: class {label!r} not among {task!r} classes")

    def __len__(self) -> int:
        return len(self.samples)

    # ---- labels ----------------------------------------------------------
    def label_matrix(self) -> np.ndarray:
        """(N, n_tasks) int64 class indices in :attr:`tasks` order, ``-1`` where missing."""
        index = {t: {c: i for i, c in enumerate(cls)} for t, cls in self.tasks.items()}
        y = np.full((len(self.samples), len(self.tasks)), -1, np.int64)
        for i, s in enumerate(self.samples):
            for j, t in enumerate(self.tasks):
                if t in s.labels:
                    y[i, j] = index[t][s.labels[t]]
        return y

    def class_counts(self, task: str | None = None) -> dict[str, int]:
        """Samples per class of ``task`` (the first task by default), in class order."""
        task = task or next(iter(self.tasks))
        c = Counter(s.labels.get(task) for s in self.samples)
        return {name: c.get(name, 0) for name in self.tasks[task]}

    # ---- selection -------------------------------------------------------
    def subset(self, indices: Iterable[int]) -> "Manifest":
        """The samples at ``indices``, with the same tasks (class order is kept)."""
        return replace(self, samples=[self.samples[i] for i in indices])

    def split(self, name: str) -> "Manifest":
        """The samples of one split (``train``/``val``/``test``; aliases such as ``dev`` work)."""
        name = normalise_split(name)
        return replace(self, samples=[s for s in self.samples if s.split == name])

    def with_tasks(self, tasks: Sequence[str]) -> "Manifest":
        """Only ``tasks`` (in that order); samples with none of their labels are dropped."""
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise InvalidConfigError(f"unknown tasks {unknown}; this dataset has {list(self.tasks)}")
        samples = [replace(s, labels={t: s.labels[t] for t in tasks if t in s.labels})
                   for s in self.samples if any(t in s.labels for t in tasks)]
        return replace(self, samples=samples, tasks={t: self.tasks[t] for t in tasks})

    def split_indices(self, name: str) -> np.ndarray:
        name = normalise_split(name)
        return np.array([i for i, s in enumerate(self.samples) if s.split == name], np.int64)

    # ---- description -----------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Counts per split and per class: the data description stored in a model package."""
        splits = Counter(s.split for s in self.samples)
        per_split = {}
        for sp in sorted(splits, key=lambda x: (x is None, SPLITS.index(x) if x in SPLITS else 9)):
            part = [s for s in self.samples if s.split == sp]
            per_split[sp or "unassigned"] = {
                "n": len(part),
                "patients": len({s.patient_id for s in part if s.patient_id is not None}) or None,
                "classes": {t: dict(Counter(s.labels.get(t) for s in part if t in s.labels))
                            for t in self.tasks},
            }
        return {"n": len(self.samples), "tasks": self.tasks, "splits": per_split,
                "origin": self.origin or None}

    def fingerprint(self) -> str:
        """A hash of the samples, tasks and .npz file: changes whenever the data changes."""
        h = hashlib.sha256()
        h.update(json.dumps({"tasks": self.tasks, "npz": self.npz}, sort_keys=True).encode())
        if self.npz:
            st = Path(self.npz).stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        for s in self.samples:
            h.update(json.dumps([s.source, s.frame, sorted(s.labels.items())]).encode())
        return h.hexdigest()[:16]

    # ---- persistence (JSON keeps task order and class lists exactly) -----
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = {"tasks": self.tasks, "npz": self.npz, "root": self.root, "origin": self.origin,
                "samples": [asdict(s) for s in self.samples]}
        path.write_text(json.dumps(data))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        data = json.loads(Path(path).read_text())
        return cls(samples=[Sample(**s) for s in data["samples"]], tasks=data["tasks"],
                   npz=data.get("npz"), root=data.get("root"), origin=data.get("origin") or {})


def build_tasks(samples: Sequence[Sample], classes: dict[str, Sequence[str]] | None = None,
                task_order: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Ordered ``{task: classes}``: the given class lists, else the sorted labels found."""
    classes = dict(classes or {})
    order = list(task_order or [])
    for s in samples:
        for t in s.labels:
            if t not in order:
                order.append(t)
    tasks: dict[str, list[str]] = {}
    for t in order:
        if t in classes:
            tasks[t] = [str(c) for c in classes[t]]
            extra = {s.labels[t] for s in samples if t in s.labels} - set(tasks[t])
            if extra:
                raise InvalidConfigError(f"task {t!r}: labels {sorted(extra)} not in the given classes")
        else:
            tasks[t] = sorted({s.labels[t] for s in samples if t in s.labels})
    return tasks
