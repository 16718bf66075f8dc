"""Log handlers for the ``strategyq`` command: one readable line, or one JSON object, per record.

Only the CLI calls ``configure_logging``; library modules just use
``logging.getLogger(__name__)``. Fields passed with ``extra=`` (``task_id``,
``task_type``, ``duration_ms``, ``outcome``, ``worker_id``, …) become top-level
JSON keys or trailing ``key=value`` pairs. Values under secret-looking keys and
passwords inside URLs are masked by both formats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

REDACTED = "***"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}
_SECRET_KEY = re.compile(
    r"pass(word|wd)|secret|api_?key|authori[sz]ation|credential|(access|auth|bearer|refresh)_?token",
    re.IGNORECASE,
)
# scheme://user:password@host and scheme://:password@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?=@)")
_BARE_VALUE = re.compile(r"^[^\s=\"']+$")

_HANDLER_MARK = "_strategyq_handler"


def redact(text: str) -> str:
    """``text`` with any password inside a URL (``redis://user:pw@host``) masked."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD_ATTRS or key.startswith("_"):
            continue
        if _SECRET_KEY.search(key):
            out[key] = REDACTED
        elif isinstance(value, str):
            out[key] = redact(value)
        else:
            out[key] = value
    return out


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _exception_text(record: logging.LogRecord) -> str | None:
    if record.exc_info and record.exc_info[0] is not None:
        return redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
    if record.stack_info:
        return redact(record.stack_info)
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, then the extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        exc = _exception_text(record)
        if exc is not None:
            entry["exc"] = exc
        return json.dumps(entry, default=str, ensure_ascii=False)


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if _BARE_VALUE.match(text) else json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One readable line: ``ts LEVEL logger: msg key=value …``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: "
        line += redact(record.getMessage())
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in extras.items())
        exc = _exception_text(record)
        if exc is not None:
            line += "\n" + exc
        return line


def configure_logging(
    fmt: Literal["text", "json"] = "text", level: str = "INFO", *, stream: TextIO | None = None
) -> None:
    """Send every log record to ``stream`` (standard error by default) in one format.

    Calling it again replaces the handler it installed before; handlers that
    others installed are left alone.

    Args:
        fmt: ``text`` for people, ``json`` for log collectors.
        level: A level name such as ``DEBUG``, ``INFO`` or ``WARNING``.
        stream: Where to write.

    Raises:
        ValueError: When ``fmt`` or ``level`` is unknown.
    """
    formatters: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}
    if fmt not in formatters:
        raise ValueError(f"unknown log format {fmt!r}; use 'text' or 'json'")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatters[fmt]())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(numeric)


def strategy_fingerprint(code: str) -> str:
    """Identify strategy source in logs without logging it: ``len=123 sha256=ab12cd34ef56``.

    ``len`` counts characters; the hash covers the UTF-8 bytes (lone surrogates included).
    """
    digest = hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()
    return f"len={len(code)} sha256={digest[:12]}"
