"""router.toml validation: the documented example parses; mistakes fail with the key at fault."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from radroute.errors import InvalidConfigError
from radroute.routing.config import load_config, parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"

MINIMAL = """
[router]
spool = "spool"

[[destinations]]
name = "out"
type = "folder"
path = "out"

[[rules]]
name = "default"
default = true
destinations = ["out"]
"""


def doc_example() -> str:
    return re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S).group(1)


def test_documented_example_parses(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text(doc_example())
    cfg = load_config(path)
    assert [r.name for r in cfg.rules] == ["frontal-chest", "lateral-chest", "ct-head-by-tags",
                                           "everything-else"]
    assert cfg.rules[0].needs_prediction and not cfg.rules[2].needs_prediction
    assert cfg.scp.sop_classes[0] == "1.2.840.10008.5.1.4.1.1.2"  # resolved from its name
    assert cfg.destinations["pacs"].correct_tags and cfg.destinations["cloud"].type == "stow"
    assert cfg.review_destination == "review" and cfg.needs_prediction
    assert {"Modality", "BodyPartExamined", "SeriesDescription"} <= cfg.tag_keywords


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text(MINIMAL)
    cfg = load_config(path)
    assert cfg.spool == tmp_path / "spool"
    assert cfg.destinations["out"].path == str(tmp_path / "out")
    assert not cfg.needs_prediction


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('type = "folder"', 'type = "ftp"'), r"destinations\[0\] \(out\)\.type: must be"),
    (lambda t: t + '\n[scp]\nport = 11112\nae_titel = "X"\n', r"scp: unknown key\(s\): ae_titel"),
    (lambda t: t.replace('destinations = ["out"]', 'destinations = ["nowhere"]'),
     r"unknown destination 'nowhere'"),
    (lambda t: t.replace("default = true", 'all = [ { tag = "Modality", equals = "CT" } ]'),
     r"exactly one rule must have 'default = true'"),
    (lambda t: t.replace("[[rules]]", '[[rules]]\nname = "x"\ndestinations = ["out"]\n'
                         'all = [ { tag = "Modaliti", equals = "CT" } ]\n[[rules]]', 1),
     r"rules\[0\] \(x\)\.all\[0\]\.tag: unknown DICOM keyword 'Modaliti'"),
    (lambda t: t.replace("[[rules]]", '[[rules]]\nname = "x"\ndestinations = ["out"]\n'
                         'all = [ { tag = "SeriesDescription", matches = "(" } ]\n[[rules]]', 1),
     r"invalid regular expression"),
    (lambda t: t + '\n[scp]\nsop_classes = ["CT Imaging Storage"]\n',
     r"scp\.sop_classes: unknown storage SOP class 'CT Imaging Storage'"),
    (lambda t: t + '\n[scp]\nport = 70000\n', r"scp\.port: not a TCP port"),
    (lambda t: t + '\n[scp]\nae_title = "A_VERY_LONG_AE_TITLE"\n', r"scp\.ae_title: an AE title is 1-16"),
    (lambda t: t.replace("[[rules]]", '[[rules]]\nname = "x"\ndestinations = ["out"]\n'
                         'all = [ { body_part = "thorax" } ]\n[[rules]]', 1),
     r"not in the body-part vocabulary"),
    (lambda t: t.replace('spool = "spool"', "spool = 3"), r"router\.spool: expected str"),
    (lambda t: t + '\n[classifier]\nmodel = "auto"\nthreshold = 1.5\n', r"classifier\.threshold: must be <= 1"),
    (lambda t: t + '\n[web]\nport = 80\n', r"web: needs token"),
    (lambda t: t + '\n[web]\ntoken = "0123456789abcdef"\n[[web.users]]\nname = "a"\npassword_hash = "x"\n',
     r"web\.users\[0\]\.password_hash: must be 'pbkdf2_sha256"),
])
def test_mistakes_are_reported_with_their_key(tmp_path, edit, message):
    path = tmp_path / "router.toml"
    path.write_text(edit(MINIMAL))
    with pytest.raises(InvalidConfigError, match=message) as err:
        load_config(path)
    assert err.value.code == "invalid_config"


def test_not_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[router\nspool=")
    with pytest.raises(InvalidConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(InvalidConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_stow_auth_options_are_checked():
    data = tomllib.loads(MINIMAL)
    data["destinations"].append({"name": "web", "type": "stow", "url": "https://x/dicom-web",
                                 "username": "u", "token": "t"})
    with pytest.raises(InvalidConfigError, match="either username/password or token"):
        parse_config(data)
    data["destinations"][-1] = {"name": "web", "type": "stow", "url": "ftp://x"}
    with pytest.raises(InvalidConfigError, match="must start with http"):
        parse_config(data)


def test_web_and_review_settings(tmp_path):
    path = tmp_path / "router.toml"
    text = MINIMAL.replace('spool = "spool"', 'spool = "spool"\nroute_after_review = true')
    path.write_text(text + '\n[web]\ntoken = "0123456789abcdef"\n')
    cfg = load_config(path)
    assert (cfg.web.host, cfg.web.port, cfg.web.token, cfg.web.users) == ("127.0.0.1", 8080, "0123456789abcdef", ())
    assert cfg.route_after_review and not cfg.review_queue  # the model never runs: nothing to review
    text = text.replace('spool = "spool"', 'spool = "spool"\nreview_destination = "out"')
    path.write_text(text + '\n[web]\ntoken = "0123456789abcdef"\n[classifier]\nthreshold = 0.99\n')
    cfg = load_config(path)
    assert cfg.review_queue and cfg.classifier.threshold == 0.99 and cfg.classifier.model == "auto"
    path.write_text(MINIMAL)
    assert load_config(path).classifier.threshold is None and not load_config(path).route_after_review


def test_the_classifier_is_the_bundled_cascade_by_default(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text(MINIMAL.replace("[[rules]]", '[[rules]]\nname = "x"\ndestinations = ["out"]\n'
                                    'all = [ { task = "body_part", label = "spine" } ]\n[[rules]]', 1))
    cfg = load_config(path)
    assert cfg.needs_prediction and cfg.classifier.model == "auto"
