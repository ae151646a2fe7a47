"""The JSON-lines and text log formats, and the [log] config section."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ferry.config import ConfigError, LogConfig, load_config
from ferry.logs import JsonFormatter, TextFormatter, setup_logging
from gateway.request_id import REQUEST_ID as GATEWAY_REQUEST_ID
from portability.request_id import REQUEST_ID as API_REQUEST_ID


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def record(
    message: str, *args: object, exc_info: bool = False, extra: dict[str, object] | None = None
) -> logging.LogRecord:
    """A record made by a real logger call, captured before any handler formats it."""
    capture = Capture()
    logger = logging.getLogger("ferry.test.logs")
    logger.addHandler(capture)
    logger.propagate = False
    try:
        logger.error(message, *args, exc_info=exc_info, extra=extra)
    finally:
        logger.removeHandler(capture)
        logger.propagate = True
    return capture.records[0]


def as_json(rec: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_line_has_the_fixed_fields() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    line = as_json(record("copied %d objects", 3))
    assert line["level"] == "error"
    assert line["logger"] == "ferry.test.logs"
    assert line["message"] == "copied 3 objects"
    ts = str(line["ts"])
    assert ts.endswith("Z")  # RFC 3339, UTC
    assert before <= datetime.fromisoformat(ts) <= datetime.now(UTC)
    assert "request_id" not in line and "exc" not in line


def test_an_exception_is_one_field_on_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = record("it failed", exc_info=True)
    line = as_json(rec)
    exc = str(line["exc"])
    assert exc.startswith("Traceback (most recent call last):")
    assert exc.endswith("ValueError: boom\nsecond line")
    assert line["message"] == "it failed"


def test_extra_fields_are_kept_and_cannot_replace_fixed_ones() -> None:
    ident = uuid.uuid4()
    line = as_json(
        record(
            "access",
            extra={"status": 200, "bytes": 5, "who": ident, "level": "fake", "when": None},
        )
    )
    assert line["status"] == 200 and line["bytes"] == 5
    assert line["who"] == str(ident)  # not JSON by itself: written as text
    assert line["when"] is None
    assert line["level"] == "error"


def test_non_ascii_is_escaped_and_round_trips() -> None:
    text = "Grüße aus Köln \U0001f6a2 \u202e"
    hostile = "key\udcff\x00\n"  # an undecodable byte, NUL and a line break from a request
    rendered = JsonFormatter().format(record("%s", text, extra={"key": hostile}))
    assert rendered.isascii() and "\n" not in rendered
    line = json.loads(rendered)
    assert line["message"] == text
    assert line["key"] == hostile


def test_the_request_id_is_the_one_of_the_request_in_progress() -> None:
    for var in (GATEWAY_REQUEST_ID, API_REQUEST_ID):
        token = var.set("ABCDEF0123456789")
        try:
            assert as_json(record("inside"))["request_id"] == "ABCDEF0123456789"
            assert "[ABCDEF0123456789] inside" in TextFormatter().format(record("inside"))
        finally:
            var.reset(token)
    assert "request_id" not in as_json(record("outside"))


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_setup_writes_json_lines_at_the_level_asked_when_not_a_terminal() -> None:
    stream = io.StringIO()  # not a TTY: "auto" means JSON
    setup_logging(LogConfig(level="warning"), stream)
    logging.getLogger("ferry.x").info("dropped")
    logging.getLogger("ferry.x").warning("kept %s", "é")
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["kept é"]


@pytest.mark.usefixtures("root_logging")
def test_setup_text_format() -> None:
    stream = io.StringIO()
    setup_logging(LogConfig(format="text"), stream)
    logging.getLogger("ferry.x").info("hello")
    assert stream.getvalue().rstrip().endswith(" INFO ferry.x hello")


def test_log_section_from_the_environment() -> None:
    config = load_config(env={"FERRY_LOG_FORMAT": "json", "FERRY_LOG_LEVEL": "debug"})
    assert config.log == LogConfig(format="json", level="debug")
    with pytest.raises(ConfigError, match=r"log\.format"):
        load_config(env={"FERRY_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match=r"log\.level"):
        load_config(env={"FERRY_LOG_LEVEL": "loud"})


def test_metrics_token_is_a_secret() -> None:
    config = load_config(env={"FERRY_API_METRICS_TOKEN": "s3cr3t-token"})
    assert config.api.metrics_token == "s3cr3t-token"
    assert "s3cr3t" not in repr(config)


def test_times_are_written_to_the_millisecond_in_utc() -> None:
    formatter = JsonFormatter()
    stamps = []
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.25, 0.5):
        rec = record("tick")
        rec.created = created
        stamps.append(json.loads(formatter.format(rec))["ts"])
    assert stamps == [
        "2023-11-14T22:13:20.000Z",
        "2023-11-14T22:13:20.999Z",
        "2023-11-14T22:13:21.250Z",
        "1970-01-01T00:00:00.500Z",
    ]
