"""The router configuration (``router.toml``), read with :mod:`tomllib` and validated at start.

Every problem is reported as one :class:`~radroute.errors.InvalidConfigError` whose message
names the offending key (``destinations[1].port: expected an integer``), so a typo never
reaches a running service. See ``docs/routing.md`` for an annotated example.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID, AllTransferSyntaxes

from radroute.errors import InvalidConfigError

TAG_OPS = ("equals", "in", "contains", "matches", "exists")
LABEL_OPS = ("label", "in", "min_score", "max_score")


@dataclass(frozen=True)
class Condition:
    """One test in a rule: on a DICOM tag, a predicted label/score, abstention, or body part."""

    kind: str                      # "tag" | "label" | "abstained" | "body_part" | "tag_body_part"
    key: str | None = None         # tag keyword, or task name for label/abstained
    equals: str | None = None
    values: tuple[str, ...] | None = None
    contains: str | None = None
    pattern: re.Pattern | None = None
    exists: bool | None = None
    min_score: float | None = None
    max_score: float | None = None
    abstained: bool | None = None
    negate: bool = False

    @property
    def needs_prediction(self) -> bool:
        return self.kind in ("label", "abstained", "body_part")


@dataclass(frozen=True)
class Rule:
    name: str
    destinations: tuple[str, ...]
    all: tuple[Condition, ...] = ()
    any: tuple[Condition, ...] = ()
    default: bool = False

    @property
    def needs_prediction(self) -> bool:
        return any(c.needs_prediction for c in self.all + self.any)


@dataclass
class DestinationConfig:
    name: str
    type: str                              # "folder" | "dicom" | "stow"
    correct_tags: bool = False
    max_attempts: int = 5                  # per-instance failures before dead-letter
    backoff_seconds: float = 1.0           # first retry delay; doubles per failure
    max_backoff_seconds: float = 300.0
    health_check_seconds: float = 30.0     # C-ECHO / HTTP probe period while unhealthy
    batch_size: int = 32
    # folder
    path: str | None = None
    # dicom
    host: str | None = None
    port: int | None = None
    ae_title: str | None = None
    calling_ae_title: str = "RADROUTE"
    timeout_seconds: float = 30.0
    # stow
    url: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    verify_tls: bool | str = True          # False, True, or a CA bundle path
    client_cert: str | None = None
    client_key: str | None = None
    health_url: str | None = None

    @property
    def needs_prediction(self) -> bool:
        """Corrected tags or a path template with ``{label_*}``/``{score_*}``/``{body_part}``."""
        return self.correct_tags or bool(self.path and re.search(r"\{(label_|score_|body_part\})",
                                                                 self.path))


@dataclass
class ScpConfig:
    ae_title: str = "RADROUTE"
    host: str = "0.0.0.0"
    port: int = 11112
    allowed_calling_aes: list[str] = field(default_factory=list)   # empty: any
    sop_classes: list[str] = field(default_factory=list)           # UIDs; empty: all storage
    transfer_syntaxes: list[str] = field(default_factory=list)     # UIDs; empty: all known
    max_associations: int = 10
    max_pdu: int = 0                                                # 0: unlimited


@dataclass
class WatchConfig:
    path: str
    poll_seconds: float = 1.0


@dataclass
class ClassifierConfig:
    model: str
    backend: str = "torch"
    batch_size: int = 16
    max_wait_ms: float = 50.0
    threads: int = 2


@dataclass
class TagCorrectionConfig:
    body_part: bool = True
    view_position: bool = True
    #: task whose label becomes ViewPosition, and label -> DICOM ViewPosition term
    view_task: str = "view"
    view_position_map: dict[str, str] = field(default_factory=dict)
    private_block: bool = True


@dataclass
class RouterConfig:
    spool: Path
    destinations: dict[str, DestinationConfig]
    rules: list[Rule]
    decision: str = "instance"              # "instance" | "series"
    series_quiet_seconds: float = 10.0
    series_max_classified: int = 16
    review_destination: str | None = None
    patient_hash_salt: str = ""
    resend_duplicates: bool = False
    keep_delivered: bool = False
    journal_keep_days: float = 30.0
    scp: ScpConfig | None = None
    watch: WatchConfig | None = None
    classifier: ClassifierConfig | None = None
    tag_correction: TagCorrectionConfig | None = None
    source_path: Path | None = None

    @property
    def needs_prediction(self) -> bool:
        """Whether any decision can need the classifier."""
        return (any(r.needs_prediction for r in self.rules)
                or self.review_destination is not None or self.tag_correction is not None
                or any(d.needs_prediction and d.type == "folder" for d in self.destinations.values()))

    @property
    def tag_keywords(self) -> set[str]:
        """DICOM keywords the rules and folder templates read."""
        keys = {c.key for r in self.rules for c in r.all + r.any if c.kind == "tag" and c.key}
        for d in self.destinations.values():
            if d.path:
                keys |= {k for k in re.findall(r"\{([A-Za-z]+)\}", d.path) if tag_for_keyword(k)}
        return keys


# ---------------------------------------------------------------------------------------------
class _Section:
    """A TOML table being validated; every error names the full key path."""

    def __init__(self, data: Any, where: str, source: Path | None):
        self.where, self.source = where, source
        if not isinstance(data, dict):
            self.fail(f"expected a table, got {type(data).__name__}")
        self.data = dict(data)

    def fail(self, message: str, key: str | None = None):
        name = f"{self.where}.{key}" if key and self.where else (key or self.where or "config")
        raise InvalidConfigError(f"{name}: {message}", self.source)

    def get(self, key: str, kind: type | tuple, default: Any = None, required: bool = False):
        if key not in self.data:
            if required:
                self.fail("required key is missing", key)
            return default
        value = self.data.pop(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if bool not in kinds and isinstance(value, bool) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.fail(f"expected {names}, got {value!r}", key)
        return value

    def str_list(self, key: str) -> list[str]:
        value = self.get(key, (list, str), [])
        value = [value] if isinstance(value, str) else value
        if not all(isinstance(v, str) for v in value):
            self.fail("expected a list of strings", key)
        return value

    def positive(self, key: str, kind: type, default: Any):
        value = self.get(key, kind, default)
        if value is not None and value <= 0:
            self.fail(f"must be > 0, got {value}", key)
        return value

    def done(self):
        if self.data:
            self.fail(f"unknown key(s): {', '.join(sorted(self.data))}")


def _storage_sop_classes() -> dict[str, str]:
    from pynetdicom import AllStoragePresentationContexts

    return {cx.abstract_syntax: UID(cx.abstract_syntax).name for cx in AllStoragePresentationContexts}


def _resolve_uid(value: str, known: dict[str, str], what: str, sec: _Section, key: str) -> str:
    """A UID or its name (``CT Image Storage``, ``JPEG 2000 Image Compression``) -> the UID."""
    if value in known:
        return value
    by_name = {n.lower(): u for u, n in known.items()}
    if value.lower() in by_name:
        return by_name[value.lower()]
    sec.fail(f"unknown {what} {value!r} (give its UID or its name, e.g. {next(iter(known.values()))!r})",
             key)
    raise AssertionError


def _parse_condition(data: Any, where: str, source: Path | None) -> Condition:
    sec = _Section(data, where, source)
    negate = sec.get("not", bool, False)
    if "tag" in sec.data:
        key = sec.get("tag", str)
        if not tag_for_keyword(key):
            sec.fail(f"unknown DICOM keyword {key!r} (use keywords such as 'Modality', "
                     "'BodyPartExamined', 'SOPClassUID', 'SeriesDescription')", "tag")
        ops = [op for op in TAG_OPS if op in sec.data]
        if len(ops) != 1:
            sec.fail(f"a tag condition needs exactly one of {', '.join(TAG_OPS)}")
        cond = _value_condition(sec, "tag", key, negate)
    elif "label" in sec.data or "min_score" in sec.data or "max_score" in sec.data:
        task = sec.get("task", str, None)
        label = sec.get("label", (str, list))
        labels = tuple([label] if isinstance(label, str) else label) if label is not None else None
        cond = Condition("label", task, values=labels,
                         min_score=sec.get("min_score", float, None),
                         max_score=sec.get("max_score", float, None), negate=negate)
        for s in (cond.min_score, cond.max_score):
            if s is not None and not 0.0 <= s <= 1.0:
                sec.fail(f"scores are probabilities in [0, 1], got {s}")
    elif "abstained" in sec.data:
        cond = Condition("abstained", sec.get("task", str, None),
                         abstained=sec.get("abstained", bool), negate=negate)
    elif "body_part" in sec.data or "tag_body_part" in sec.data:
        kind = "body_part" if "body_part" in sec.data else "tag_body_part"
        value = sec.get(kind, (str, list))
        values = tuple([value] if isinstance(value, str) else value)
        from radroute.vocab import BODY_PARTS

        bad = [v for v in values if v not in BODY_PARTS]
        if bad:
            sec.fail(f"not in the body-part vocabulary: {bad}; use one of {', '.join(BODY_PARTS)}",
                     kind)
        cond = Condition(kind, values=values, negate=negate)
    else:
        sec.fail("a condition needs 'tag', 'label'/'min_score', 'abstained', 'body_part' "
                 "or 'tag_body_part'")
        raise AssertionError
    sec.done()
    return cond


def _value_condition(sec: _Section, kind: str, key: str, negate: bool) -> Condition:
    if "equals" in sec.data:
        return Condition(kind, key, equals=str(sec.get("equals", (str, int, float))), negate=negate)
    if "in" in sec.data:
        return Condition(kind, key, values=tuple(sec.str_list("in")), negate=negate)
    if "contains" in sec.data:
        return Condition(kind, key, contains=sec.get("contains", str), negate=negate)
    if "matches" in sec.data:
        text = sec.get("matches", str)
        try:
            return Condition(kind, key, pattern=re.compile(text, re.IGNORECASE), negate=negate)
        except re.error as exc:
            sec.fail(f"invalid regular expression {text!r}: {exc}", "matches")
    return Condition(kind, key, exists=sec.get("exists", bool), negate=negate)


def _parse_rule(data: Any, index: int, source: Path | None) -> Rule:
    sec = _Section(data, f"rules[{index}]", source)
    name = sec.get("name", str, f"rule-{index}")
    sec.where = f"rules[{index}] ({name})"
    destinations = tuple(sec.str_list("destinations"))
    default = sec.get("default", bool, False)
    conds = {}
    for key in ("all", "any"):
        items = sec.get(key, list, [])
        conds[key] = tuple(_parse_condition(c, f"{sec.where}.{key}[{i}]", source)
                           for i, c in enumerate(items))
    if not default and not conds["all"] and not conds["any"]:
        sec.fail("needs 'all' and/or 'any' conditions (or 'default = true')")
    if default and (conds["all"] or conds["any"]):
        sec.fail("the default rule takes no conditions")
    sec.done()
    return Rule(name, destinations, conds["all"], conds["any"], default)


def _parse_destination(data: Any, index: int, source: Path | None) -> DestinationConfig:
    sec = _Section(data, f"destinations[{index}]", source)
    name = sec.get("name", str, required=True)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        sec.fail(f"use letters, digits, '_', '.', '-' only, got {name!r}", "name")
    sec.where = f"destinations[{index}] ({name})"
    kind = sec.get("type", str, required=True)
    if kind not in ("folder", "dicom", "stow"):
        sec.fail(f"must be 'folder', 'dicom' or 'stow', got {kind!r}", "type")
    d = DestinationConfig(
        name=name, type=kind,
        correct_tags=sec.get("correct_tags", bool, False),
        max_attempts=sec.positive("max_attempts", int, 5),
        backoff_seconds=sec.positive("backoff_seconds", float, 1.0),
        max_backoff_seconds=sec.positive("max_backoff_seconds", float, 300.0),
        health_check_seconds=sec.positive("health_check_seconds", float, 30.0),
        batch_size=sec.positive("batch_size", int, 32),
    )
    if kind == "folder":
        d.path = sec.get("path", str, required=True)
    elif kind == "dicom":
        d.host = sec.get("host", str, required=True)
        d.port = sec.get("port", int, required=True)
        if not 0 < d.port < 65536:
            sec.fail(f"not a TCP port: {d.port}", "port")
        d.ae_title = _ae(sec, "ae_title", required=True)
        d.calling_ae_title = _ae(sec, "calling_ae_title", default="RADROUTE")
        d.timeout_seconds = sec.positive("timeout_seconds", float, 30.0)
    else:
        d.url = sec.get("url", str, required=True)
        if not d.url.startswith(("http://", "https://")):
            sec.fail(f"must start with http:// or https://, got {d.url!r}", "url")
        d.username = sec.get("username", str, None)
        d.password = sec.get("password", str, None)
        d.token = sec.get("token", str, None)
        if d.token and d.username:
            sec.fail("give either username/password or token, not both")
        if (d.username is None) != (d.password is None):
            sec.fail("username and password go together")
        d.verify_tls = sec.get("verify_tls", (bool, str), True)
        d.client_cert = sec.get("client_cert", str, None)
        d.client_key = sec.get("client_key", str, None)
        d.health_url = sec.get("health_url", str, None)
        d.timeout_seconds = sec.positive("timeout_seconds", float, 30.0)
    sec.done()
    return d


def _ae(sec: _Section, key: str, default: str | None = None, required: bool = False) -> str:
    value = sec.get(key, str, default, required=required)
    if value is not None and not (0 < len(value) <= 16 and value.isascii() and "\\" not in value
                                  and value.strip()):
        sec.fail(f"an AE title is 1-16 ASCII characters without backslash, got {value!r}", key)
    return value


def _parse_scp(data: Any, source: Path | None) -> ScpConfig:
    sec = _Section(data, "scp", source)
    scp = ScpConfig(
        ae_title=_ae(sec, "ae_title", default="RADROUTE"),
        host=sec.get("host", str, "0.0.0.0"),
        port=sec.get("port", int, 11112),
        max_associations=sec.positive("max_associations", int, 10),
        max_pdu=sec.get("max_pdu", int, 0),
    )
    if not 0 <= scp.port < 65536:
        sec.fail(f"not a TCP port: {scp.port}", "port")
    scp.allowed_calling_aes = sec.str_list("allowed_calling_aes")
    storage = _storage_sop_classes()
    scp.sop_classes = [_resolve_uid(v, storage, "storage SOP class", sec, "sop_classes")
                       for v in sec.str_list("sop_classes")]
    syntaxes = {str(u): u.name for u in AllTransferSyntaxes}
    scp.transfer_syntaxes = [_resolve_uid(v, syntaxes, "transfer syntax", sec, "transfer_syntaxes")
                             for v in sec.str_list("transfer_syntaxes")]
    sec.done()
    return scp


def parse_config(data: dict, source: Path | None = None) -> RouterConfig:
    """Validate a decoded TOML document into a :class:`RouterConfig`."""
    top = _Section(data, "", source)
    base = source.parent if source else Path.cwd()

    router = _Section(top.get("router", dict, {}), "router", source)
    spool = Path(router.get("spool", str, required=True)).expanduser()
    spool = spool if spool.is_absolute() else base / spool
    decision = router.get("decision", str, "instance")
    if decision not in ("instance", "series"):
        router.fail(f"must be 'instance' or 'series', got {decision!r}", "decision")

    destinations: dict[str, DestinationConfig] = {}
    for i, d in enumerate(top.get("destinations", list, [])):
        dest = _parse_destination(d, i, source)
        if dest.name in destinations:
            top.fail(f"destination name {dest.name!r} is used twice", f"destinations[{i}].name")
        if dest.type == "folder" and not Path(dest.path).expanduser().is_absolute():
            dest.path = str(base / dest.path)
        destinations[dest.name] = dest

    rules = [_parse_rule(r, i, source) for i, r in enumerate(top.get("rules", list, []))]
    defaults = [i for i, r in enumerate(rules) if r.default]
    if len(defaults) != 1 or defaults[0] != len(rules) - 1:
        top.fail("exactly one rule must have 'default = true', and it must be the last rule",
                 "rules")
    for i, r in enumerate(rules):
        for name in r.destinations:
            if name not in destinations:
                top.fail(f"unknown destination {name!r}; defined: {', '.join(destinations) or 'none'}",
                         f"rules[{i}] ({r.name}).destinations")

    cfg = RouterConfig(
        spool=spool, destinations=destinations, rules=rules, decision=decision,
        series_quiet_seconds=router.positive("series_quiet_seconds", float, 10.0),
        series_max_classified=router.positive("series_max_classified", int, 16),
        review_destination=router.get("review_destination", str, None),
        patient_hash_salt=router.get("patient_hash_salt", str, ""),
        resend_duplicates=router.get("resend_duplicates", bool, False),
        keep_delivered=router.get("keep_delivered", bool, False),
        journal_keep_days=router.positive("journal_keep_days", float, 30.0),
        source_path=source,
    )
    router.done()
    if cfg.review_destination is not None and cfg.review_destination not in destinations:
        top.fail(f"unknown destination {cfg.review_destination!r}", "router.review_destination")

    if "scp" in top.data:
        cfg.scp = _parse_scp(top.get("scp", dict), source)
    if "watch" in top.data:
        sec = _Section(top.get("watch", dict), "watch", source)
        path = Path(sec.get("path", str, required=True)).expanduser()
        cfg.watch = WatchConfig(str(path if path.is_absolute() else base / path),
                                sec.positive("poll_seconds", float, 1.0))
        sec.done()
    if "classifier" in top.data:
        sec = _Section(top.get("classifier", dict), "classifier", source)
        cfg.classifier = ClassifierConfig(
            model=sec.get("model", str, required=True),
            backend=sec.get("backend", str, "torch"),
            batch_size=sec.positive("batch_size", int, 16),
            max_wait_ms=sec.positive("max_wait_ms", float, 50.0),
            threads=sec.positive("threads", int, 2),
        )
        if cfg.classifier.backend not in ("torch", "onnx", "auto"):
            sec.fail(f"must be 'torch', 'onnx' or 'auto', got {cfg.classifier.backend!r}", "backend")
        model = cfg.classifier.model
        if ("/" in model or model.startswith(".")) and not Path(model).expanduser().is_absolute():
            cfg.classifier.model = str(base / model)
        sec.done()
    if "tag_correction" in top.data:
        sec = _Section(top.get("tag_correction", dict), "tag_correction", source)
        vp_map = sec.get("view_position_map", dict, {})
        if not all(isinstance(v, str) for v in vp_map.values()):
            sec.fail("values must be DICOM ViewPosition terms (strings)", "view_position_map")
        cfg.tag_correction = TagCorrectionConfig(
            body_part=sec.get("body_part", bool, True),
            view_position=sec.get("view_position", bool, True),
            view_task=sec.get("view_task", str, "view"),
            view_position_map=vp_map,
            private_block=sec.get("private_block", bool, True),
        )
        sec.done()
    top.done()

    if cfg.needs_prediction and cfg.classifier is None:
        what = ("a rule uses predictions" if any(r.needs_prediction for r in rules)
                else "review_destination, tag_correction or a {label_*} path template need predictions")
        top.fail(f"{what} but there is no [classifier] section with a model")
    return cfg


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate ``router.toml``; raises :class:`InvalidConfigError` with the key at fault."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidConfigError("config file not found", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"cannot read config: {exc}", path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfigError(f"not valid TOML: {exc}", path) from exc
    return parse_config(data, path.resolve())

