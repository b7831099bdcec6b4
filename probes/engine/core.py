"""The probe engine: checks a rule's path from this side of the network, with asyncio.

Knows nothing of the database: it takes checks (a host, ports, a protocol and the service
expected there) and returns what it found, port by port and summarised per check.
Names are resolved once, then every port is probed by address. Concurrency is bounded
overall and per destination, so a thousand silent (filtered) ports cost about one
timeout, not a thousand.

A rule that fails says where when it can: a device that rejects it with an ICMP error is named
(icmp.py), and the path toward a port that gets no answer is traced (trace.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ports.ranges import number_runs

from .checks import Check, CheckResult, PortResult
from .findings import Finding, cause_of, describe
from .icmp import IcmpError, keep_errors, read_error
from .policy import LOOPBACK, Network, refusal
from .services import TCP_SERVICES, udp_exchange
from .states import SEVERITY, State
from .trace import WINDOW, trace

# Without an ICMP error in the socket's queue (a local error: no route), what the errno says.
UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.ENONET}
# A result in these states carries the path it took in its evidence (see Attempt.evidence): where
# the probe left from, where to, with which timeout and how many tries, for the firewall's logs.
# What a trace adds to a filtered result's evidence (trace.py), and why one is missing.
TRACE_KEYS = ("path", "stopped_after", "stopped_hop", "traced_hops", "not_traced")
# A trace begins once a probe has waited this share of its timeout with no answer: answers come in
# milliseconds, so the port is as good as filtered, and the trace runs while the probe waits out
# the rest. A filtered port then costs about its timeout: two windows of hops (trace.WINDOW) fit.
TRACE_AFTER = 1 / 3
# How long each window of hops waits for its answers (at most a third of the timeout).
HOP_WAIT = 1.0
PATH_STATES = {State.REFUSED, State.FILTERED, State.UNREACHABLE, State.ERROR}
# What a range's evidence says of the path, once for all its ports (each port's own stays small).
RANGE_PATH = ("source", "destination", "protocol", "timeout", "tries", "rejected_by", "icmp", *TRACE_KEYS)


@dataclass
class Attempt:
    """The path of one port's probe, as the socket saw it: the local address it left from, and how
    many tries (connects, or datagrams sent) the probe made, each up to the engine's timeout."""

    source: str = ""
    source_port: int = 0
    tries: int = 0

    def left_from(self, sockname: object) -> None:
        """Note the local address of a socket (bound by its connect, even one that failed)."""
        if isinstance(sockname, tuple) and len(sockname) >= 2 and sockname[1]:
            self.source, self.source_port = str(sockname[0]), int(sockname[1])

    def evidence(self, check: Check, address: str, port: int, timeout: float) -> dict:
        """Small and JSON-safe: what a result in PATH_STATES adds to its evidence."""
        source = self.source or route_source(address)
        path = {"source": source} if source else {}
        if self.source_port:
            path["source_port"] = self.source_port
        path |= {"destination": address, "port": port, "protocol": check.protocol}
        return path | {"timeout": timeout, "tries": self.tries}


def route_source(address: str) -> str:
    """The local address the kernel's route to `address` leaves from ("" if none): a UDP socket's
    connect() only picks the route; it sends nothing."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((address, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return ""


@dataclass
class Engine:
    timeout: float = 3.0
    concurrency: int = 1000
    per_destination: int = 64
    allowed: tuple[Network, ...] = LOOPBACK  # the networks the engine may connect to
    site: str = ""  # the probe site it runs in, named in a trace's words
    trace_hops: int = 0  # how far a trace of a filtered port goes (0: no traces)
    trace_max: int = 0  # the most traces of a run
    deadline: float | None = None  # the event loop's time by which a trace must have ended

    async def run(self, checks: Iterable[Check], on_result: Callable[[Check, CheckResult], None]) -> None:
        """Probe every check; `on_result` is called as each one completes."""
        checks = list(checks)
        self._overall = asyncio.Semaphore(self.concurrency)
        self._per_destination: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.per_destination)
        )
        # The traces of the run, by destination, protocol and port (a range's by its check): a
        # flow probed for several rules is traced once.
        self._traces: dict[tuple[str, str, int], asyncio.Future[dict]] = {}
        addresses = await self._resolve_all({check.host for check in checks})

        async def one(check: Check) -> None:
            address = addresses[check.host]
            on_result(check, address if isinstance(address, CheckResult) else await self.probe(check, address))

        try:
            await asyncio.gather(*(one(check) for check in checks))
        finally:
            for tracing in self._traces.values():
                tracing.cancel()

    async def _resolve_all(self, hosts: set[str]) -> dict[str, str | CheckResult]:
        names = sorted(hosts)
        found = await asyncio.gather(*(self._resolve(name) for name in names))
        return dict(zip(names, found, strict=True))

    async def _resolve(self, host: str) -> str | CheckResult:
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        started = time.monotonic()
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM), self.timeout
            )
        except (TimeoutError, OSError) as exc:
            reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            return CheckResult(
                State.DNS_ERROR,
                f"{host} does not resolve: {reason}",
                latency_ms=_ms(started),
                evidence={
                    "host": host,
                    "reason": reason,
                    "cause": "timeout" if isinstance(exc, TimeoutError) else cause_of(exc),
                },
            )
        return infos[0][4][0]

    async def probe(self, check: Check, address: str) -> CheckResult:
        # Checked here, after names are resolved, before anything is sent, whatever the database says.
        if reason := refusal(address, self.allowed):
            return CheckResult(State.NOT_PROBED, reason, address, evidence={"cause": "probe target policy"})
        if check.port_start == check.port_end:  # most rules: no gather, no task of its own
            return summarise(check, address, [await self._probe_port(check, address, check.port_start)])
        ports = await asyncio.gather(*(self._probe_port(check, address, port) for port in check.ports))
        return summarise(check, address, ports)

    async def _probe_port(self, check: Check, address: str, port: int) -> PortResult:
        # The destination's slot first: probes queued for one busy host must not hold
        # overall slots that other hosts' probes could use.
        async with self._per_destination[address], self._overall:
            started = time.monotonic()
            attempt = Attempt()
            tracing = asyncio.ensure_future(self._trace_if_silent(check, address, port)) if self.trace_hops else None
            try:
                if check.protocol == "udp":
                    result = await self._probe_udp(check, address, port, started, attempt)
                else:
                    result = await self._probe_tcp(check, address, port, started, attempt)
                if tracing is not None and result.state == State.FILTERED:
                    result.evidence |= await tracing
                    result.detail = self._where_silence_starts(result, check.protocol)
            except Exception as exc:  # a probe must report, never crash the run
                result = PortResult(port, State.ERROR, _ms(started), describe(exc), {"cause": cause_of(exc)})
            finally:
                if tracing is not None:
                    tracing.cancel()
            if result.state in PATH_STATES:
                result.evidence = attempt.evidence(check, address, port, self.timeout) | result.evidence
            return result

    async def _trace_if_silent(self, check: Check, address: str, port: int) -> dict:
        """After TRACE_AFTER of the timeout with no answer (cancelled before, if one comes): the
        trace of this flow, shared with the run's other probes of it, within the run's limits."""
        await asyncio.sleep(self.timeout * TRACE_AFTER)
        key = (address, check.protocol, port if check.port_start == check.port_end else -check.key)
        if key not in self._traces:
            if len(self._traces) >= self.trace_max:
                return {"not_traced": f"the run reached its limit of {self.trace_max} traces (PROBE_TRACE_MAX)"}
            wait = min(HOP_WAIT, self.timeout * TRACE_AFTER)
            longest = -(-self.trace_hops // WINDOW) * wait
            if self.deadline is not None and asyncio.get_running_loop().time() + longest > self.deadline:
                return {"not_traced": "no time left before the run's deadline"}
            exchange = udp_exchange(check.service) if check.protocol == "udp" else None
            payload = exchange[0] if exchange else b""  # the rule's own request: a firewall that reads it sees it
            self._traces[key] = asyncio.ensure_future(
                trace(address, port, check.protocol, payload, self.trace_hops, wait)
            )
        try:  # shielded: a probe that stops waiting must not cancel a trace that others share
            return await asyncio.shield(self._traces[key])
        except OSError as exc:  # out of sockets, say: the port is still filtered, only not traced
            return {"not_traced": f"the trace failed: {describe(exc)}"}

    def _where_silence_starts(self, result: PortResult, protocol: str) -> str:
        """A filtered port's reason, with what its trace found."""
        evidence = result.evidence
        answer = "no SYN-ACK" if protocol == "tcp" else "no answer"
        if evidence.get("stopped_after"):
            site = f" from site {self.site}" if self.site else ""
            return (
                f"no answer after {evidence['stopped_after']}, hop {evidence['stopped_hop']}{site} "
                f"({answer} within {self.timeout:g} s: dropped there or just beyond)"
            )
        if "traced_hops" in evidence:
            return f"{result.detail}; no hop of {evidence['traced_hops']} answered a TTL-limited probe"
        return result.detail

    async def _probe_tcp(self, check: Check, address: str, port: int, started: float, attempt: Attempt) -> PortResult:
        # A socket of its own, not open_connection(host, port): after a refused or unanswered
        # connect, it still tells which local address the SYN left from.
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            keep_errors(sock)  # an ICMP error that ends the connect then names its sender
            attempt.tries += 1
            try:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (address, port)), self.timeout)
            finally:
                with contextlib.suppress(OSError):
                    attempt.left_from(sock.getsockname())
            reader, writer = await asyncio.open_connection(sock=sock)
        except TimeoutError:
            sock.close()
            return PortResult(
                port,
                State.FILTERED,
                None,
                f"no answer within {self.timeout:g} s: dropped, or the host is down",
                {"cause": f"no SYN-ACK within {self.timeout:g} s"},
            )
        except OSError as exc:
            icmp = read_error(sock)
            sock.close()
            refused = "connection refused (RST): nothing listens, or a firewall rejects"
            return rejected(port, exc, started, refused, icmp)
        except BaseException:  # cancelled: the run was closed
            sock.close()
            raise
        latency = _ms(started)
        speak = TCP_SERVICES.get(check.service)
        try:
            if speak is None:
                return PortResult(port, State.OPEN, latency, "TCP connection accepted")
            try:
                evidence = await asyncio.wait_for(speak(reader, writer, check), self.timeout)
            except Finding as exc:
                return PortResult(port, exc.state, latency, str(exc), exc.evidence)
            except TimeoutError:
                if check.service == "tls":  # a server answers a ClientHello at once; silence is held traffic
                    return PortResult(
                        port,
                        State.ERROR,
                        latency,
                        f"TCP connected, but the TLS handshake got no answer within {self.timeout:g} s: "
                        "a device in the path may be holding TLS",
                        {"cause": "no ServerHello in time"},
                    )
                return PortResult(port, State.OPEN, latency, f"connected, but no {check.service} answer in time")
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
                reason = f"connected, then the {check.service} exchange failed: {describe(exc)}"
                return PortResult(port, State.ERROR, latency, reason, {"cause": cause_of(exc)})
            return PortResult(port, State.OPEN, latency, evidence.pop("detail"), evidence)
        finally:
            writer.close()
            with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _probe_udp(self, check: Check, address: str, port: int, started: float, attempt: Attempt) -> PortResult:
        exchange = udp_exchange(check.service)
        if exchange is None:
            return PortResult(
                port,
                State.UNVERIFIABLE,
                None,
                f"{check.service} over UDP is one-way: nothing answers, so an open path cannot be "
                "told from a dropped one. Check that the receiver logs a test trap.",
                {"cause": "one-way protocol"},
            )
        request, parse = exchange
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()
        # A socket of its own, to keep its ICMP errors (keep_errors) before anything is sent.
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            keep_errors(sock)
            sock.connect((address, port))
        except OSError as exc:  # no route: connect() of a UDP socket fails before anything is sent
            sock.close()
            return rejected(port, exc, started, "ICMP port unreachable: nothing listens, or a firewall rejects")
        transport, datagram = await loop.create_datagram_endpoint(lambda: _Datagram(answered, sock), sock=sock)
        attempt.left_from(transport.get_extra_info("sockname"))
        try:
            attempt.tries += 1
            transport.sendto(request)
            try:
                data = await asyncio.wait_for(answered, self.timeout)
            except TimeoutError:
                return PortResult(
                    port,
                    State.FILTERED,
                    None,
                    f"no UDP answer within {self.timeout:g} s: dropped, or nothing answers",
                    {"cause": f"no datagram within {self.timeout:g} s"},
                )
            except OSError as exc:
                refused = "ICMP port unreachable: nothing listens, or a firewall rejects"
                return rejected(port, exc, started, refused, datagram.icmp)
            latency = _ms(started)
            try:
                evidence = parse(data, request)
            except ValueError as exc:
                return PortResult(
                    port,
                    State.ERROR,
                    latency,
                    f"an answer that is not {check.service}: {exc}",
                    {"cause": data[:64].hex()},
                )
            return PortResult(port, State.OPEN, latency, evidence.pop("detail"), evidence)
        finally:
            transport.close()


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, answered: asyncio.Future[bytes], sock: socket.socket) -> None:
        self.answered, self.sock = answered, sock
        self.icmp: IcmpError | None = None

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.answered.done():
            self.answered.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # Taken from the error queue now: left there, it keeps the socket readable (EPOLLERR).
        self.icmp = self.icmp or read_error(self.sock)
        if not self.answered.done():
            self.answered.set_exception(exc)


def rejected(port: int, exc: OSError, started: float, refused: str, icmp: IcmpError | None = None) -> PortResult:
    """A connection the path answered with a no: an ICMP(v6) error, named with its sender and
    mapped to a state the same way for both families (IcmpError.state), or, without one, refused
    (a TCP RST) or unreachable (a local error: no route). Any other error is the probe's own,
    raised again."""
    if icmp is not None:
        detail = f"rejected by {icmp.offender}: {icmp.name}"
        if icmp.state == State.REFUSED:
            detail = f"ICMP port unreachable from {icmp.offender}: nothing listens, or a firewall rejects"
        return PortResult(port, icmp.state, _ms(started), detail, {"cause": cause_of(exc), **icmp.evidence()})
    if isinstance(exc, ConnectionRefusedError):
        return PortResult(port, State.REFUSED, _ms(started), refused, {"cause": cause_of(exc)})
    if exc.errno in UNREACHABLE_ERRNOS:
        return PortResult(port, State.UNREACHABLE, _ms(started), describe(exc), {"cause": cause_of(exc)})
    raise exc


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def summarise(check: Check, address: str, ports: list[PortResult]) -> CheckResult:
    """One result for a check: its port's, or for a range the most telling state with a count."""
    if len(ports) == 1:
        (only,) = ports
        return CheckResult(only.state, only.detail, address, only.latency_ms, {"port": only.port, **only.evidence})
    by_state: dict[State, list[int]] = defaultdict(list)
    for result in ports:
        by_state[result.state].append(result.port)
    state = min(by_state, key=SEVERITY.index)
    opened = len(by_state.get(State.OPEN, []))
    others = "; ".join(f"{s}: {number_runs(p)}" for s, p in sorted(by_state.items()) if s != State.OPEN)
    summary = f"{opened} of {len(ports)} open" + (f"; {others}" if others else "")
    latencies = [r.latency_ms for r in ports if r.latency_ms is not None]
    evidence = {
        "ports": {
            str(r.port): {
                "state": r.state,
                "latency_ms": r.latency_ms,
                "detail": r.detail,
                "cause": r.evidence.get("cause"),
            }
            for r in ports
        },
        "open": opened,
        "total": len(ports),
    }
    if state != State.OPEN:  # the range's verdict, with the cause (and path) of its first port in that state
        first = next(r.evidence for r in ports if r.state == state)
        evidence["cause"] = first.get("cause")
        evidence |= {key: first[key] for key in RANGE_PATH if key in first}
        # Said in the summary too, which is what the recorder compares: a range whose traffic
        # stops at another device is news, as a port's is (its summary names the device).
        if evidence.get("rejected_by"):
            summary += f"; rejected by {evidence['rejected_by']}"
        elif evidence.get("stopped_after"):
            summary += f"; stops after {evidence['stopped_after']}"
    return CheckResult(state, summary, address, max(latencies) if latencies else None, evidence)
