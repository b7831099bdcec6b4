"""Typed readers of environment variables: each setting says its variable, its type and its default."""

import os
import re

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    return env_str(name, str(default)).lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(env_str(name, str(default)))


def env_float(name: str, default: float) -> float:
    return float(env_str(name, str(default)))


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated list, without blanks."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


_RATE = re.compile(r"(\d+)/(s|sec|second|m|min|minute|h|hour|d|day)")


def env_rate(name: str, default: str) -> str | None:
    """A request rate as DRF's throttles take it, "<count>/<period>" (period s, sec, second, m, min,
    minute, h, hour, d or day): e.g. "1200/min". None, no limit, for "0", "off" or empty; a
    mistake stops the process, saying which."""
    text = env_str(name, default).strip().lower()
    if text in {"", "0", "off"}:
        return None
    match = _RATE.fullmatch(text)
    if not match:
        raise ImproperlyConfigured(f'{name}: {text!r} is not a rate such as "1200/min" (or 0 for no limit).')
    return None if int(match.group(1)) == 0 else text
