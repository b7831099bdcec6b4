"""The probe engine, in plain Python: no Django, no database (see core.py)."""

from .checks import Check, CheckResult
from .core import Engine
from .policy import Network, refusal
from .states import State
from .tls import parse_pin

__all__ = ["Check", "CheckResult", "Engine", "Network", "State", "parse_pin", "refusal"]
