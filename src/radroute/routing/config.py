"""The router configuration (``router.toml``), read with :mod:`tomllib` and validated by pydantic models.

Every problem is reported as one :class:`~radroute.errors.InvalidConfigError` whose message
names the offending key as the file spells it (``destinations[1] (pacs).port: expected int, got
'104'``), so a typo never reaches a running service. See ``docs/routing.md`` for an annotated
example. Relative paths are relative to the config file's folder.
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (AfterValidator, Discriminator, Field, Strict, Tag, ValidationError, ValidationInfo,
                      model_validator)
from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID, AllTransferSyntaxes

from radroute.errors import InvalidConfigError
from radroute.routing.conditions import AnyCondition, Condition, TagCondition
from radroute.routing.schema import (ConfigModel, ConfigPath, ConfigPathText, Names, PositiveFloat,
                                     PositiveInt, Probability, ProblemAt, error_message, from_config_folder)

if TYPE_CHECKING:
    from radroute.inference.record import Prediction

DEFAULT_AE_TITLE = "RADROUTE"


# ---- DICOM and network values --------------------------------------------------------------------
def _tcp_port(lowest: int) -> AfterValidator:
    def check(port: int) -> int:
        if not lowest <= port < 65536:
            raise ValueError(f"not a TCP port: {port}")
        return port
    return AfterValidator(check)


#: a port to connect to, and one to listen on (0: any free port)
Port = Annotated[int, _tcp_port(1)]
ListenPort = Annotated[int, _tcp_port(0)]


def _ae_title(value: str) -> str:
    if not (0 < len(value) <= 16 and value.isascii() and "\\" not in value and value.strip()):
        raise ValueError(f"an AE title is 1-16 ASCII characters without backslash, got {value!r}")
    return value


AETitle = Annotated[str, AfterValidator(_ae_title)]


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {url!r}")
    return url


@cache
def _storage_sop_classes() -> dict[str, str]:
    from pynetdicom import AllStoragePresentationContexts

    return {cx.abstract_syntax: UID(cx.abstract_syntax).name for cx in AllStoragePresentationContexts}


@cache
def _transfer_syntaxes() -> dict[str, str]:
    return {str(u): u.name for u in AllTransferSyntaxes}


def _uids(known: Callable[[], dict[str, str]], what: str) -> AfterValidator:
    """UIDs or their names (``CT Image Storage``, ``JPEG 2000 Image Compression``) -> the UIDs."""
    def resolve(values: tuple[str, ...]) -> tuple[str, ...]:
        table = known()
        by_name = {n.lower(): u for u, n in table.items()}
        for v in values:
            if v not in table and v.lower() not in by_name:
                raise ValueError(f"unknown {what} {v!r} (give its UID or its name, "
                                 f"e.g. {next(iter(table.values()))!r})")
        return tuple(v if v in table else by_name[v.lower()] for v in values)
    return AfterValidator(resolve)


# ---- sections ------------------------------------------------------------------------------------
class ScpConfig(ConfigModel):
    """``[scp]``: the C-STORE SCP (and C-ECHO) the router listens with."""

    ae_title: AETitle = DEFAULT_AE_TITLE
    host: str = "0.0.0.0"
    port: ListenPort = 11112
    #: empty: any calling AE
    allowed_calling_aes: Names = ()
    #: UIDs (names resolved); empty: all storage SOP classes
    sop_classes: Annotated[Names, _uids(_storage_sop_classes, "storage SOP class")] = ()
    #: UIDs (names resolved); empty: all known
    transfer_syntaxes: Annotated[Names, _uids(_transfer_syntaxes, "transfer syntax")] = ()
    max_associations: PositiveInt = 10
    #: 0: unlimited
    max_pdu: int = 0


class WatchConfig(ConfigModel):
    """``[watch]``: a folder whose new files are routed, then removed."""

    path: ConfigPathText
    poll_seconds: PositiveFloat = 1.0


def _model_name_or_path(model: str, info: ValidationInfo) -> str:
    """A bundled model's name as given; a package folder relative to the config file."""
    return str(from_config_folder(model, info)) if "/" in model or model.startswith(".") else model


class ClassifierConfig(ConfigModel):
    """``[classifier]``: the model and how instances are micro-batched through it."""

    #: a bundled name, a package folder, or ``auto``: the bundled models, chosen per image as
    #: ``radroute classify`` chooses them (radroute.inference.AutoPredictor)
    model: Annotated[str, AfterValidator(_model_name_or_path)] = "auto"
    backend: Literal["torch", "onnx", "auto"] = "torch"
    batch_size: PositiveInt = 16
    max_wait_ms: PositiveFloat = 50.0
    threads: PositiveInt = 2
    #: overrides every task's calibrated abstention threshold (as ``classify --threshold``)
    threshold: Probability | None = None


class TagCorrectionConfig(ConfigModel):
    """``[tag_correction]``: what destinations with ``correct_tags = true`` get corrected."""

    body_part: bool = True
    view_position: bool = True
    #: the task whose label becomes ViewPosition, through label -> DICOM ViewPosition term
    view_task: str = "view"
    view_position_map: dict[str, str] = {}
    private_block: bool = True


# ---- destinations --------------------------------------------------------------------------------
class DestinationConfig(ConfigModel):
    """A ``[[destinations]]`` entry: what every kind has (retries, batching, tag correction)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    type: Literal["folder", "dicom", "stow"]
    correct_tags: bool = False
    #: per-instance failures before dead-letter
    max_attempts: PositiveInt = 5
    #: first retry delay; doubles per failure up to max_backoff_seconds
    backoff_seconds: PositiveFloat = 1.0
    max_backoff_seconds: PositiveFloat = 300.0
    #: C-ECHO / HTTP probe period while unhealthy
    health_check_seconds: PositiveFloat = 30.0
    batch_size: PositiveInt = 32
    #: "sr": with each classified instance routed here, also its results as a DICOM SR
    send_results: Literal["sr"] | None = None

    @property
    def needs_prediction(self) -> bool:
        """Whether what it receives depends on the prediction (corrected tags, results)."""
        return self.correct_tags or self.send_results is not None


class FolderDestinationConfig(DestinationConfig):
    """``type = "folder"``: files written under ``path`` (a folder or a ``{...}`` template)."""

    type: Literal["folder"]
    path: ConfigPathText

    @property
    def needs_prediction(self) -> bool:
        """Corrected tags, results or a path template with ``{label_*}``/``{score_*}``/``{body_part}``."""
        return super().needs_prediction or bool(re.search(r"\{(label_|score_|body_part\})", self.path))


class _NetworkDestinationConfig(DestinationConfig):
    timeout_seconds: PositiveFloat = 30.0


class DicomDestinationConfig(_NetworkDestinationConfig):
    """``type = "dicom"``: C-STORE to an AE."""

    type: Literal["dicom"]
    host: str
    port: Port
    ae_title: AETitle
    calling_ae_title: AETitle = DEFAULT_AE_TITLE


class StowDestinationConfig(_NetworkDestinationConfig):
    """``type = "stow"``: STOW-RS to a DICOMweb server (basic auth or a bearer token; mTLS)."""

    type: Literal["stow"]
    url: Annotated[str, AfterValidator(_http_url)]
    username: str | None = None
    password: str | None = None
    token: str | None = None
    #: False, True, or a CA bundle path
    verify_tls: bool | str = True
    client_cert: str | None = None
    client_key: str | None = None
    health_url: str | None = None

    @model_validator(mode="after")
    def _one_login(self) -> StowDestinationConfig:
        if self.token and self.username:
            raise ValueError("give either username/password or token, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


_DESTINATION_CLASSES = {"folder": "FolderDestinationConfig", "dicom": "DicomDestinationConfig",
                        "stow": "StowDestinationConfig"}


def _destination_class(value: Any) -> str:
    if isinstance(value, DestinationConfig):
        return type(value).__name__
    # an unknown or missing type: the base class reports it (its `type` lists the known ones)
    return _DESTINATION_CLASSES.get(value.get("type") if isinstance(value, dict) else None,
                                    "DestinationConfig")


AnyDestinationConfig = Annotated[
    Union[Annotated[FolderDestinationConfig, Tag("FolderDestinationConfig")],
          Annotated[DicomDestinationConfig, Tag("DicomDestinationConfig")],
          Annotated[StowDestinationConfig, Tag("StowDestinationConfig")],
          Annotated[DestinationConfig, Tag("DestinationConfig")]],
    Discriminator(_destination_class)]


# ---- rules ---------------------------------------------------------------------------------------
Conditions = Annotated[tuple[AnyCondition, ...], Strict(False)]


class Rule(ConfigModel):
    """A ``[[rules]]`` entry: its destinations get an instance when its conditions hold."""

    name: str
    destinations: Names = ()
    all: Conditions = ()
    any: Conditions = ()
    default: bool = False

    @model_validator(mode="after")
    def _conditions_xor_default(self) -> Rule:
        if not self.default and not self.all and not self.any:
            raise ValueError("needs 'all' and/or 'any' conditions (or 'default = true')")
        if self.default and (self.all or self.any):
            raise ValueError("the default rule takes no conditions")
        return self

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """``all`` then ``any``."""
        return self.all + self.any

    @property
    def needs_prediction(self) -> bool:
        return any(c.needs_prediction for c in self.conditions)

    def matches(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        """``all`` conditions hold and, if there are ``any`` conditions, at least one does."""
        return (all(c.matches(tags, prediction) for c in self.all)
                and (not self.any or any(c.matches(tags, prediction) for c in self.any)))


# ---- the web page --------------------------------------------------------------------------------
#: ``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`` (Django's format; ``radroute web --hash-password``)
PASSWORD_HASH = re.compile(r"^pbkdf2_sha256\$(\d+)\$([^$]+)\$([A-Za-z0-9+/]+=*)$")
MIN_PBKDF2_ITERATIONS = 100_000


def _password_hash(value: str) -> str:
    found = PASSWORD_HASH.match(value)
    if not found:
        raise ValueError("must be 'pbkdf2_sha256$<iterations>$<salt>$<hash>' "
                         "(make one with: radroute web --hash-password)")
    if int(found.group(1)) < MIN_PBKDF2_ITERATIONS:
        raise ValueError(f"needs at least {MIN_PBKDF2_ITERATIONS} PBKDF2 iterations")
    return value


class WebUser(ConfigModel):
    """A ``[[web.users]]`` entry: who may sign in to the web page."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    password_hash: Annotated[str, AfterValidator(_password_hash)]


class WebConfig(ConfigModel):
    """``[web]``: the status and review page beside the router (``radroute web``). With this
    section the router keeps a review queue (its instances keep their spool files)."""

    #: sent as ``Authorization: Bearer <token>``
    token: Annotated[str, Field(min_length=16)] | None = None
    users: Annotated[tuple[WebUser, ...], Strict(False)] = ()
    host: str = "127.0.0.1"
    port: ListenPort = 8080
    session_hours: PositiveFloat = 12.0
    thumbnail_size: Annotated[int, Field(ge=32, le=1024)] = 256

    @model_validator(mode="after")
    def _credentials(self) -> WebConfig:
        if not self.token and not self.users:
            raise ValueError('needs token = "..." or [[web.users]] entries (name, password_hash): '
                             "the web page never runs without credentials")
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("a user name is listed twice")
        return self


# ---- the whole file ------------------------------------------------------------------------------
class RouterSettings(ConfigModel):
    """``[router]``: the spool and how decisions are made and kept."""

    spool: ConfigPath
    decision: Literal["instance", "series"] = "instance"
    series_quiet_seconds: PositiveFloat = 10.0
    series_max_classified: PositiveInt = 16
    review_destination: str | None = None
    #: every classified instance's results, as a DICOM SR, also go to this destination
    results_destination: str | None = None
    patient_hash_salt: str = ""
    resend_duplicates: bool = False
    keep_delivered: bool = False
    journal_keep_days: PositiveFloat = 30.0
    #: a review settled on the web page is decided again with the corrected labels and delivered
    route_after_review: bool = False


class _Sections(ConfigModel):
    scp: ScpConfig | None = None
    watch: WatchConfig | None = None
    classifier: ClassifierConfig = ClassifierConfig()
    tag_correction: TagCorrectionConfig | None = None
    web: WebConfig | None = None


class RouterConfig(RouterSettings, _Sections):
    """The validated configuration: the ``[router]`` settings as attributes, the optional
    sections (``None`` when absent), destinations by name and rules in order."""

    destinations: dict[str, DestinationConfig]
    rules: tuple[Rule, ...]
    source_path: Path | None = None

    @property
    def needs_prediction(self) -> bool:
        """Whether any decision can need the classifier."""
        return (any(r.needs_prediction for r in self.rules)
                or self.review_destination is not None or self.tag_correction is not None
                or self.results_destination is not None
                or any(d.send_results is not None or (d.needs_prediction and d.type == "folder")
                       for d in self.destinations.values()))

    @property
    def review_queue(self) -> bool:
        """Whether uncertain instances wait in the review queue (``[web]`` and a model that runs)."""
        return self.web is not None and self.needs_prediction

    @property
    def tag_keywords(self) -> set[str]:
        """DICOM keywords the rules and folder templates read."""
        keys = {c.tag for r in self.rules for c in r.conditions if isinstance(c, TagCondition)}
        for d in self.destinations.values():
            if isinstance(d, FolderDestinationConfig):
                keys |= {k for k in re.findall(r"\{([A-Za-z]+)\}", d.path) if tag_for_keyword(k)}
        return keys


class _Document(_Sections):
    """``router.toml`` as written; the cross-checks between its tables."""

    router: RouterSettings
    destinations: Annotated[tuple[AnyDestinationConfig, ...], Strict(False)] = ()
    rules: Annotated[tuple[Rule, ...], Strict(False)] = ()

    @model_validator(mode="after")
    def _cross_checks(self) -> _Document:
        names: set[str] = set()
        for i, d in enumerate(self.destinations):
            if d.name in names:
                raise ProblemAt(("destinations", i, "name"), f"destination name {d.name!r} is used twice")
            names.add(d.name)
        if [r.default for r in self.rules].count(True) != 1 or not self.rules[-1].default:
            raise ProblemAt(("rules",), "exactly one rule must have 'default = true', "
                                        "and it must be the last rule")
        for i, r in enumerate(self.rules):
            for name in r.destinations:
                if name not in names:
                    defined = ", ".join(d.name for d in self.destinations) or "none"
                    raise ProblemAt(("rules", i, "destinations"),
                                    f"unknown destination {name!r}; defined: {defined}")
        for key in ("review_destination", "results_destination"):
            name = getattr(self.router, key)
            if name is not None and name not in names:
                raise ProblemAt(("router", key), f"unknown destination {name!r}")
        return self

    def config(self, source: Path | None) -> RouterConfig:
        """The :class:`RouterConfig` of this document (read from ``source``)."""
        return RouterConfig(**dict(self.router), **{k: getattr(self, k) for k in _Sections.model_fields},
                            destinations={d.name: d for d in self.destinations}, rules=self.rules,
                            source_path=source)


def _name_rules(data: Any) -> Any:
    """Unnamed rules are called ``rule-<index>`` (in decisions and in messages)."""
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        return data
    return {**data, "rules": [{"name": f"rule-{i}", **r} if isinstance(r, dict) else r
                              for i, r in enumerate(rules)]}


def parse_config(data: dict, source: Path | None = None) -> RouterConfig:
    """Validate a decoded TOML document into a :class:`RouterConfig`; relative paths are taken
    relative to ``source``'s folder (or the working folder)."""
    data = _name_rules(data)
    base = source.parent if source else Path.cwd()
    try:
        return _Document.model_validate(data, context={"base": base}).config(source)
    except ValidationError as exc:
        raise InvalidConfigError(error_message(exc, data), source) from exc


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


__all__ = ["AETitle", "AnyDestinationConfig", "ClassifierConfig", "DestinationConfig",
           "DicomDestinationConfig", "FolderDestinationConfig", "ListenPort", "Port", "RouterConfig",
           "RouterSettings", "Rule", "ScpConfig", "StowDestinationConfig", "TagCorrectionConfig",
           "WatchConfig", "WebConfig", "WebUser", "load_config", "parse_config"]
