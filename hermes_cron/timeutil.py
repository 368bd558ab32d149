"""ISO 8601 helpers. Every time we store carries an explicit offset."""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import Optional

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9 is not supported
    raise

UTC = timezone.utc


def to_iso(dt: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a ``+00:00`` offset."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime cannot be stored")
    return dt.astimezone(UTC).isoformat()


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 time that carries an offset (``Z`` accepted)."""
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return dt


def parse_iso_opt(text: Optional[str]) -> Optional[datetime]:
    """``parse_iso`` that passes ``None`` through."""
    return None if text is None else parse_iso(text)


def get_zone(name: str) -> tzinfo:
    """Return the IANA zone ``name``; raise ``ValueError`` naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def local_zone_name() -> str:
    """The system's IANA zone name, from ``TZ`` or ``/etc/localtime``; ``UTC`` if unknown."""
    import os

    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            get_zone(tz)
            return tz
        except ValueError:
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "zoneinfo/"
        if marker in target:
            name = target.split(marker, 1)[1]
            get_zone(name)
            return name
    except (OSError, ValueError):
        pass
    try:
        with open("/etc/timezone", encoding="utf-8") as fh:
            name = fh.read().strip()
        get_zone(name)
        return name
    except (OSError, ValueError):
        pass
    return "UTC"
