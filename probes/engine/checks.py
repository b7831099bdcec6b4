"""What the engine takes and gives: a check (a host, ports, a protocol and the service expected
there), the result of each port, and the check's result. Knows nothing of the database."""

from __future__ import annotations

from dataclasses import dataclass, field

from .states import State


@dataclass(frozen=True)
class Check:
    key: int
    host: str
    port_start: int
    port_end: int
    protocol: str  # tcp or udp
    service: str  # ports.choices.Service
    expected_pin: str = ""  # sha256/<base64> of the certificate's public key, for TLS

    @property
    def ports(self) -> range:
        return range(self.port_start, self.port_end + 1)


@dataclass
class PortResult:
    port: int
    state: State
    latency_ms: float | None = None
    detail: str = ""
    evidence: dict = field(default_factory=dict)


@dataclass
class CheckResult:
    state: State
    summary: str
    address: str = ""
    latency_ms: float | None = None
    evidence: dict = field(default_factory=dict)
