"""Settings: file < environment < flags, and one clear line for every mistake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.config import (
    ConfigError,
    Settings,
    load_settings,
    normalize_destination,
    parse_duration,
    parse_size,
    parse_when,
)
from pipeline.telnyx.models import Secret

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "archiver.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(text)
    return path


def config_error(tmp_path: Path, text: str, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env=kwargs.pop("env", {}), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_example_config_loads_and_matches_the_defaults() -> None:
    settings = load_settings(EXAMPLE, env={})
    defaults = load_settings(None, env={})
    assert settings.source == str(EXAMPLE)
    assert settings.telnyx == defaults.telnyx
    assert settings.storage == defaults.storage
    assert settings.archive == defaults.archive
    assert settings.schedule == defaults.schedule
    assert settings.logging == defaults.logging


def test_the_example_config_documents_every_key_with_a_comment() -> None:
    from pipeline.config import _SCHEMA

    lines = EXAMPLE.read_text().splitlines()
    for section, keys in _SCHEMA.items():
        assert f"[{section}]" in lines
        for key in keys:
            index = next(
                i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"{key} =")
            )
            assert lines[index - 1].startswith("#"), f"{section}.{key} has no comment above it"


def test_defaults_need_no_file() -> None:
    settings = load_settings(None, env={})
    assert settings.archive.min_age == timedelta(hours=24)
    assert settings.schedule.cron == "0 2 * * *"
    assert settings.schedule.timezone == "UTC"
    assert settings.archive.state_dir == "~/.local/state/telnyx-archiver"
    assert settings.telnyx.api_key is None


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[storage]\ndefault_destination = "s3://file-bucket/x"\n[archive]\nmin_age = "2d"\n',
    )
    env = {"TELNYX_ARCHIVER_DESTINATION": "gs://env-bucket/y", "TELNYX_API_KEY": "KEY-from-env"}
    settings = load_settings(path, env=env)
    assert settings.storage.default_destination == "gs://env-bucket/y"
    assert settings.archive.min_age == timedelta(days=2)
    assert settings.telnyx.api_key == Secret("KEY-from-env")

    flagged = load_settings(
        path,
        env=env,
        overrides={
            "storage.default_destination": "az://flag-container/z",
            "archive.min_age": "90m",
        },
    )
    assert flagged.storage.default_destination == "az://flag-container/z"
    assert flagged.archive.min_age == timedelta(minutes=90)


def test_emulator_endpoints_come_from_their_usual_environment_variables() -> None:
    settings = load_settings(
        None,
        env={
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9023",
            "AZURE_STORAGE_BLOB_ENDPOINT": "http://127.0.0.1:10000/{account_name}",
            "TELNYX_BASE_URL": "http://127.0.0.1:8080/v2",
        },
    )
    assert settings.storage.s3_endpoint_url == "http://127.0.0.1:5000"
    assert settings.storage.gcs_endpoint_url == "http://127.0.0.1:9023"
    assert settings.storage.azure_blob_endpoint == "http://127.0.0.1:10000/{account_name}"
    assert settings.telnyx.base_url == "http://127.0.0.1:8080/v2"


def test_archive_section_fills_archive_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[archive]\n"
        'formats = ["mp3", "wav"]\nkeep_source = true\nmax_delete = 10\nconcurrency = 4\n'
        'max_bytes_in_flight = "64MiB"\ntranscription_lag = "3h"\nearliest = 2024-01-01\n',
    )
    settings = load_settings(path, env={})
    options = settings.archive.options
    assert options.formats == ("mp3", "wav")
    assert options.keep_source is True
    assert options.max_delete == 10
    assert options.concurrency == 4
    assert options.max_bytes_in_flight == 64 * 1024 * 1024
    assert options.transcription_lag == timedelta(hours=3)
    assert settings.archive.earliest == datetime(2024, 1, 1, tzinfo=UTC)


def test_format_both_means_mp3_and_wav() -> None:
    settings = load_settings(None, env={}, overrides={"archive.formats": "both"})
    assert settings.archive.options.formats == ("mp3", "wav")


def test_an_unknown_key_is_named_with_its_section(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[archive]\nmin_agee = '24h'\n")
    assert "unknown key archive.min_agee" in message


def test_an_unknown_section_is_named(tmp_path: Path) -> None:
    assert "unknown section [archiv]" in config_error(tmp_path, "[archiv]\nmin_age = '24h'\n")


def test_a_bad_cron_expression_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[schedule]\ncron = '0 25 * * *'\n")
    assert message.startswith("schedule.cron: bad cron expression '0 25 * * *'")


def test_a_cron_line_with_the_wrong_number_of_fields_is_named(tmp_path: Path) -> None:
    assert "schedule.cron" in config_error(tmp_path, "[schedule]\ncron = '0 2 * *'\n")


def test_an_unknown_time_zone_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[schedule]\ntimezone = 'Mars/Olympus'\n")
    assert message == "schedule.timezone: unknown time zone 'Mars/Olympus'"


def test_a_bad_duration_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[archive]\nmin_age = '2 days'\n")
    assert message == "archive.min_age: bad duration '2 days' (use e.g. 90m, 24h, 2d)"


def test_a_wrong_type_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[telnyx]\nmax_concurrency = 'many'\n")
    assert message.startswith("telnyx.max_concurrency: expected an integer")


def test_an_unsupported_destination_scheme_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[storage]\ndefault_destination = 'ftp://host/x'\n")
    assert message.startswith("storage.default_destination: unsupported destination scheme 'ftp'")


def test_a_destination_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    message = config_error(tmp_path, "", env={"TELNYX_ARCHIVER_DESTINATION": "s3://"})
    assert message.startswith("storage.default_destination: destination 's3://' has no bucket")


def test_invalid_toml_is_reported_on_one_line(tmp_path: Path) -> None:
    assert "invalid TOML" in config_error(tmp_path, "[archive\nmin_age = \n")


def test_a_config_file_that_is_not_utf8_is_named_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "archiver.toml"
    path.write_bytes(b'[telnyx]\nbase_url = "\xff"\n')
    with pytest.raises(ConfigError, match=r"archiver\.toml: invalid TOML: .*utf-8"):
        load_settings(path, env={})


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nope.toml"):
        load_settings(tmp_path / "nope.toml", env={})


def test_a_missing_api_key_is_reported_when_a_command_needs_it() -> None:
    settings = load_settings(None, env={})
    with pytest.raises(ConfigError) as info:
        settings.telnyx.require_api_key()
    assert str(info.value) == (
        "telnyx.api_key is not set: export TELNYX_API_KEY or set api_key in [telnyx]"
    )


def test_the_api_key_never_shows_in_the_settings_repr() -> None:
    settings = load_settings(None, env={"TELNYX_API_KEY": "KEYsupersecret123"})
    assert "KEYsupersecret123" not in repr(settings)
    assert settings.telnyx.require_api_key().reveal() == "KEYsupersecret123"


def test_an_error_message_about_a_bad_value_never_echoes_the_api_key(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[telnyx]\napi_key = 12345678\n")
    assert "12345678" not in message
    assert message.startswith("telnyx.api_key:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(minutes=90)),
        ("1w", timedelta(weeks=1)),
        ("45", timedelta(seconds=45)),
        (30, timedelta(seconds=30)),
    ],
)
def test_durations_read_like_people_write_them(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "2 days", "-1h", "1y", "24hh"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_naive_dates_and_datetimes_are_utc() -> None:
    assert parse_when("2024-03-01") == datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_when("2024-03-01T05:30") == datetime(2024, 3, 1, 5, 30, tzinfo=UTC)
    assert parse_when("2024-03-01T05:30:00+02:00") == datetime(2024, 3, 1, 3, 30, tzinfo=UTC)
    assert parse_when("2024-03-01T05:30:00Z") == datetime(2024, 3, 1, 5, 30, tzinfo=UTC)


def test_sizes_accept_bytes_and_binary_units() -> None:
    assert parse_size(1024) == 1024
    assert parse_size("8MiB") == 8 * 1024 * 1024
    assert parse_size("256 MiB") == 256 * 1024 * 1024
    with pytest.raises(ValueError):
        parse_size("lots")


def test_a_plain_path_destination_becomes_an_absolute_file_url(tmp_path: Path) -> None:
    assert normalize_destination(str(tmp_path / "a")) == (tmp_path / "a").as_uri()


@pytest.mark.parametrize(
    "url", ["s3://user:hunter2secret@bucket/x", "file://user:hunter2secret@host/x"]
)
def test_a_destination_url_carrying_a_password_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_destination(url)
    assert "hunter2secret" not in str(info.value)


def test_settings_is_a_frozen_value() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.source = "x"  # type: ignore[misc]
