"""Settings: the config file, then the environment, then command-line flags (later wins).

Every problem becomes one `ConfigError` whose message is a single line naming the key at fault,
e.g. "archive.min_age: bad duration '2 days' (use e.g. 90m, 24h, 2d)". Secrets stay `Secret`s.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.archive.options import AUDIO_FORMATS, ArchiveOptions
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx.models import Secret

CONFIG_ENV = "TELNYX_ARCHIVER_CONFIG"
DEFAULT_STATE_DIR = "~/.local/state/telnyx-archiver"
DESTINATION_SCHEMES = ("file", "s3", "gs", "az")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """The settings cannot be used. The message is one line and names the key; never a secret."""


@dataclass(frozen=True, slots=True)
class TelnyxSettings:
    api_key: Secret | None = None
    base_url: str | None = None  # None: the client's default (the public API)
    requests_per_second: float = 20.0
    max_concurrency: int = 16
    max_attempts: int = 6
    timeout: float = 60.0
    page_concurrency: int = 8

    def require_api_key(self) -> Secret:
        if not self.api_key:
            raise ConfigError(
                "telnyx.api_key is not set: export TELNYX_API_KEY or set api_key in [telnyx]"
            )
        return self.api_key


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What `run`, `backfill` and `schedule` ask of the archive, beyond ArchiveOptions."""

    options: ArchiveOptions = field(default_factory=ArchiveOptions)
    min_age: timedelta = timedelta(hours=24)  # recordings younger than this wait for a later run
    earliest: datetime = datetime(2009, 1, 1, tzinfo=UTC)  # where the nightly window starts
    state_dir: str = DEFAULT_STATE_DIR


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    misfire_grace_time: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    textfile: str | None = None  # a .prom file for node-exporter's textfile collector
    pushgateway: str | None = None  # a Prometheus Pushgateway URL
    job: str = "telnyx_archiver"

    @property
    def enabled(self) -> bool:
        return bool(self.textfile or self.pushgateway)


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    format: str = "text"
    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class Settings:
    telnyx: TelnyxSettings = field(default_factory=TelnyxSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    archive: RunSettings = field(default_factory=RunSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str | None = None  # the config file read, if any

    def state_path(self) -> Path:
        return Path(self.archive.state_dir).expanduser()


# --- value parsers -------------------------------------------------------------------------

# A tiny grammar ("90m", "1h30m", "2d"); a dependency for one regex is not worth it.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_UNIT = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """'24h', '90m', '2d', '1h30m', '45s', '1w' -> timedelta. A bare number means seconds."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"bad duration {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"bad duration {text!r} (negative)")
        return timedelta(seconds=text)
    s = re.sub(r"\s+", "", str(text)).lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return timedelta(seconds=float(s))
    if not re.fullmatch(rf"(?:{_DURATION.pattern})+", s):
        raise ValueError(f"bad duration {str(text)[:40]!r} (use e.g. 90m, 24h, 2d)")
    return sum(
        (timedelta(**{_UNIT[unit]: float(n)}) for n, unit in _DURATION.findall(s)), timedelta()
    )


def parse_when(text: str | datetime) -> datetime:
    """An ISO date or datetime -> aware UTC datetime (naive means UTC)."""
    if isinstance(text, datetime):
        value = text
    else:
        s = str(text).strip()
        try:
            value = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
        except ValueError:
            raise ValueError(
                f"bad date {s[:40]!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM])"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_SIZE = re.compile(r"(\d+)\s*(b|kib|mib|gib|kb|mb|gb)?", re.IGNORECASE)
_SIZE_UNIT = {
    None: 1,
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}


def parse_size(value: str | int) -> int:
    """8388608, '8MiB', '256 MiB' -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"bad size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad size {value!r}")
        return value
    m = _SIZE.fullmatch(str(value).strip())
    if not m:
        raise ValueError(f"bad size {str(value)[:40]!r} (use bytes or e.g. 8MiB)")
    unit = m.group(2).lower() if m.group(2) else None
    return int(m.group(1)) * _SIZE_UNIT[unit]


def normalize_destination(url: str) -> str:
    """Check a destination URL's scheme; a plain path becomes a file:// URL."""
    text = str(url).strip()
    if not text:
        raise ValueError("empty destination")
    parts = urlsplit(text)
    if not parts.scheme or (len(parts.scheme) == 1 and os.name == "nt"):
        return Path(text).expanduser().resolve().as_uri()
    scheme = parts.scheme.lower()
    if scheme not in DESTINATION_SCHEMES:
        raise ValueError(
            f"unsupported destination scheme {scheme!r} in {_strip_userinfo(text)!r} "
            f"(use {', '.join(s + '://' for s in DESTINATION_SCHEMES)})"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(
                "file destination must be absolute, e.g. file:///srv/archive: "
                f"{_strip_userinfo(text)!r}"
            )
    elif not parts.netloc:
        raise ValueError(f"destination {text!r} has no bucket (e.g. {scheme}://bucket/prefix)")
    if parts.password:
        raise ValueError("destination URL must not carry a password; use the environment")
    return text


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return url


def validate_cron(expr: str, timezone: str) -> None:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expr, timezone=timezone)
    except Exception as exc:  # ValueError for fields, ZoneInfoNotFoundError for the zone
        raise ValueError(f"bad cron expression {expr!r}: {one_line(exc)}") from None


def validate_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except Exception:
        raise ValueError(f"unknown time zone {name!r}") from None


def one_line(exc: BaseException) -> str:
    """An exception as one line of text (its type when it has no message)."""
    return " ".join(str(exc).split()) or type(exc).__name__


# --- the schema: which keys each section takes, and how to read them ----------------------


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {type(v).__name__}")
    return v


def _opt_str(v: Any) -> str | None:
    return _str(v) or None


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and re.fullmatch(r"\s*\d+\s*", v):
            return int(v)
        raise ValueError(f"expected an integer, got {v!r}"[:80])
    return v


def _pos_int(v: Any) -> int:
    n = _int(v)
    if n < 1:
        raise ValueError(f"must be at least 1, got {n}")
    return n


def _opt_max_delete(v: Any) -> int | None:
    n = _int(v)
    if n < 0:
        raise ValueError(f"must be 0 or more, got {n}")
    return n


def _pos_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"expected a number, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {v!r}"[:80]) from None
    if f <= 0:
        raise ValueError(f"must be positive, got {f}")
    return f


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.lower() in ("1", "true", "yes", "on")
    raise ValueError(f"expected true or false, got {v!r}"[:80])


def _formats(v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list | tuple) or not items:
        raise ValueError('expected a list of formats, e.g. ["mp3"]')
    out: list[str] = []
    for item in items:
        name = str(item).lower()
        if name == "both":
            out.extend(AUDIO_FORMATS)
            continue
        if name not in AUDIO_FORMATS:
            raise ValueError(f"unknown audio format {item!r} (use {', '.join(AUDIO_FORMATS)})")
        out.append(name)
    return tuple(dict.fromkeys(out))


def _when(v: Any) -> datetime:
    if isinstance(v, datetime):
        return parse_when(v)
    if hasattr(v, "isoformat"):  # TOML dates arrive as datetime.date
        return parse_when(v.isoformat())
    return parse_when(_str(v))


def _secret(v: Any) -> Secret | None:
    if isinstance(v, Secret):
        return v or None
    return Secret(_str(v)) if v else None


def _destination(v: Any) -> str | None:
    return normalize_destination(_str(v)) if v else None


def _log_format(v: Any) -> str:
    s = _str(v).lower()
    if s not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}, got {v!r}")
    return s


def _log_level(v: Any) -> str:
    s = _str(v).upper()
    if s not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {v!r}")
    return s


def _tz(v: Any) -> str:
    s = _str(v)
    validate_timezone(s)
    return s


_SCHEMA: dict[str, dict[str, Any]] = {
    "telnyx": {
        "api_key": _secret,
        "base_url": _opt_str,
        "requests_per_second": _pos_float,
        "max_concurrency": _pos_int,
        "max_attempts": _pos_int,
        "timeout": _pos_float,
        "page_concurrency": _pos_int,
    },
    "storage": {
        "default_destination": _destination,
        "prefix": _str,
        "part_size": parse_size,
        "multipart_threshold": parse_size,
        "max_concurrency": _pos_int,
        "s3_endpoint_url": _opt_str,
        "gcs_endpoint_url": _opt_str,
        "azure_blob_endpoint": _opt_str,
    },
    "archive": {},  # filled from ArchiveOptions below, plus min_age, earliest, state_dir
    "schedule": {"cron": _str, "timezone": _tz, "misfire_grace_time": parse_duration},
    "metrics": {"textfile": _opt_str, "pushgateway": _opt_str, "job": _str},
    "logging": {"format": _log_format, "level": _log_level},
}


def _archive_keys() -> dict[str, Any]:
    """Every ArchiveOptions field is a config key, parsed by the type of its default."""
    special: dict[str, Any] = {
        "formats": _formats,
        "max_delete": _opt_max_delete,
        "max_bytes_in_flight": parse_size,
    }
    keys: dict[str, Any] = {}
    for f in dataclasses.fields(ArchiveOptions):
        if f.name in ("run_id", "state_dir"):  # per run / kept in RunSettings
            continue
        default = f.default
        if f.name in special:
            keys[f.name] = special[f.name]
        elif isinstance(default, bool):
            keys[f.name] = _bool
        elif isinstance(default, int):
            keys[f.name] = _pos_int
        elif isinstance(default, timedelta):
            keys[f.name] = parse_duration
        elif isinstance(default, float):
            keys[f.name] = _pos_float
        else:
            keys[f.name] = _opt_str
    keys.update(min_age=parse_duration, earliest=_when, state_dir=_str)
    return keys


_SCHEMA["archive"] = _archive_keys()


# Environment variables, each feeding one key.
ENVIRONMENT: dict[str, str] = {
    "TELNYX_API_KEY": "telnyx.api_key",
    "TELNYX_BASE_URL": "telnyx.base_url",
    "AWS_ENDPOINT_URL": "storage.s3_endpoint_url",
    "STORAGE_EMULATOR_HOST": "storage.gcs_endpoint_url",
    "AZURE_STORAGE_BLOB_ENDPOINT": "storage.azure_blob_endpoint",
    "TELNYX_ARCHIVER_DESTINATION": "storage.default_destination",
}

_RUN_ONLY = {"min_age", "earliest", "state_dir"}


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the TOML file, then the environment, then flags ("section.key" -> value, None skipped)."""
    env = os.environ if env is None else env
    raw: dict[str, dict[str, Any]] = {section: {} for section in _SCHEMA}
    source = None
    if config_path:
        path = Path(config_path).expanduser()
        source = str(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: invalid TOML: {one_line(exc)}") from None
        for section, values in data.items():
            if section not in _SCHEMA:
                raise ConfigError(f"unknown section [{section}] in {path}")
            if not isinstance(values, dict):
                raise ConfigError(f"{section} must be a [{section}] table in {path}")
            for key, value in values.items():
                if key not in _SCHEMA[section]:
                    raise ConfigError(f"unknown key {section}.{key} in {path}")
                raw[section][key] = value
    for var, dotted in ENVIRONMENT.items():
        if env.get(var):
            section, key = dotted.split(".")
            raw[section][key] = env[var]
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if key not in _SCHEMA.get(section, {}):
            raise ConfigError(f"unknown key {dotted}")
        raw[section][key] = value

    parsed: dict[str, dict[str, Any]] = {}
    for section, values in raw.items():
        parsed[section] = {}
        for key, value in values.items():
            try:
                parsed[section][key] = _SCHEMA[section][key](value)
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(f"{section}.{key}: {one_line(exc)}") from None

    sched = ScheduleSettings(**parsed["schedule"])
    try:
        validate_cron(sched.cron, sched.timezone)
    except ValueError as exc:
        raise ConfigError(f"schedule.cron: {exc}") from None

    archive = parsed["archive"]
    options = ArchiveOptions(**{k: v for k, v in archive.items() if k not in _RUN_ONLY})
    run = RunSettings(options=options, **{k: v for k, v in archive.items() if k in _RUN_ONLY})
    return Settings(
        telnyx=TelnyxSettings(**parsed["telnyx"]),
        storage=StorageSettings(**parsed["storage"]),
        archive=run,
        schedule=sched,
        metrics=MetricsSettings(**parsed["metrics"]),
        logging=LoggingSettings(**parsed["logging"]),
        source=source,
    )
