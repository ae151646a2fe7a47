"""Process logging: JSON lines or plain text on stderr, as `[log]` says.

A JSON line is one object: `ts` (RFC 3339, UTC), `level`, `logger`, `message`, `request_id`
inside a gateway or API request, `exc` (the formatted traceback) when there is one, and any
fields the call passed with `extra=`. Lines are pure ASCII (non-ASCII text is escaped), so
they survive any stderr encoding and a hostile byte in a request cannot split or break one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from ferry.config import LogConfig
from gateway.request_id import REQUEST_ID as GATEWAY_REQUEST_ID
from portability.request_id import REQUEST_ID as API_REQUEST_ID

# What every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def current_request_id() -> str | None:
    """The id of the gateway or API request this code runs in (each is its own task)."""
    return GATEWAY_REQUEST_ID.get() or API_REQUEST_ID.get()


# json.dumps builds a new encoder for every call that passes an option; one, built once.
_ENCODER = json.JSONEncoder(ensure_ascii=True, default=str)


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """RFC 3339 in UTC to the millisecond. The part up to the second is written once a
        second: a busy gateway writes hundreds of lines in each."""
        second = int(created)
        if second != self._second[0]:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{self._second[1]}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            # The fixed keys win: an extra named "level" must not disguise a line.
            if key not in _STANDARD and key not in line:
                line[key] = value
        return _ENCODER.encode(line)


class TextFormatter(logging.Formatter):
    """`ts level logger [request id] message`, for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        request_id = current_request_id()
        where = f" [{request_id}]" if request_id else ""
        return f"{record.asctime} {record.levelname} {record.name}{where} {record.message}"


def setup_logging(config: LogConfig, stream: TextIO | None = None) -> None:
    """Send every logger's records to `stream` (stderr) in the configured format and level."""
    stream = sys.stderr if stream is None else stream
    fmt = config.format
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level.upper())
    # Neither format writes the caller's file and line, the thread or the process: the
    # logging HOWTO's "Optimization" switches skip finding them for every record (the access
    # line's record cost 14 us, 11.5 without).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
