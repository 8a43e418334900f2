"""radroute.data.load_labelled_data / DataSource: any source with the commands' options, typed errors."""
from __future__ import annotations

import csv

import pytest

from radroute.data import DataSource, Manifest, load_labelled_data
from radroute.data.datasource import parse_label_columns
from radroute.errors import InvalidConfigError, RadrouteError


def test_label_columns_as_mapping_or_task_equals_column():
    assert parse_label_columns(["organ=label", " view = view_group "]) == {"organ": "label", "view": "view_group"}
    assert parse_label_columns({"organ": "label"}) == {"organ": "label"}
    for bad in (["organ"], ["=label"], ["organ="]):
        with pytest.raises(InvalidConfigError, match="TASK=COLUMN"):
            parse_label_columns(bad)


def test_csv_options_on_a_folder_are_a_typed_error(class_folders):
    with pytest.raises(InvalidConfigError, match="apply to CSV sources") as info:
        load_labelled_data(class_folders, label_columns={"region": "label"})
    assert isinstance(info.value, RadrouteError) and info.value.code == "invalid_config"
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidConfigError):
        load_labelled_data(class_folders / "missing")


def test_folder_task_csv_columns_and_in_memory_manifest(class_folders, tmp_path):
    m = load_labelled_data(class_folders, task="region")
    assert list(m.tasks) == ["region"] and len(m) == 12
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "where", "pid"])
        for i, s in enumerate(m.samples):
            w.writerow([s.source, s.labels["region"], f"p{i // 2}"])
    c = load_labelled_data(str(table), label_columns=["region=where"], path_column="image", patient_column="pid",
                           filters=["where!=head"], task="ignored for CSV")
    assert list(c.tasks) == ["region"] and len(c) == 8 and c.samples[0].patient_id is not None
    source = DataSource(data=c)
    assert source.load() is c and isinstance(source.load(), Manifest)
    assert DataSource(data=table).source_name == str(table)
