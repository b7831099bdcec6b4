"""Typed readers of environment variables: each setting says its variable, its type and its default."""

import os


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
