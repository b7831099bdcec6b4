"""Probes: their limits, timing, and the networks each probe site may reach."""

import ipaddress

from django.core.exceptions import ImproperlyConfigured

from .env import env_float, env_int, env_str

PROBE_TIMEOUT = env_float("PROBE_TIMEOUT", 3)
PROBE_CONCURRENCY = env_int("PROBE_CONCURRENCY", 1000)
PROBE_PER_DESTINATION = env_int("PROBE_PER_DESTINATION", 64)
# A filtered port's path is traced (probes/engine/trace.py) up to PROBE_TRACE_HOPS hops (0: never),
# at most PROBE_TRACE_MAX flows per run and site: each trace sends a probe per hop.
PROBE_TRACE_HOPS = env_int("PROBE_TRACE_HOPS", 16)
PROBE_TRACE_MAX = env_int("PROBE_TRACE_MAX", 100)
if not 0 <= PROBE_TRACE_HOPS <= 255 or PROBE_TRACE_MAX < 0:  # a TTL is one byte
    raise ImproperlyConfigured("PROBE_TRACE_HOPS must be 0 to 255, PROBE_TRACE_MAX 0 or more.")
PROBE_HEARTBEAT_INTERVAL = env_float("PROBE_HEARTBEAT_INTERVAL", 10)
PROBE_HEARTBEAT_TIMEOUT = env_float("PROBE_HEARTBEAT_TIMEOUT", 30)
# Touched at each heartbeat sent: a site worker's container health check reads its age.
PROBE_HEARTBEAT_FILE = env_str("PROBE_HEARTBEAT_FILE", "/tmp/portal-heartbeat")
# How long a run waits for its sites' workers beyond the probing itself.
PROBE_QUEUE_GRACE = env_float("PROBE_QUEUE_GRACE", 120)
PROBE_RUNS_PER_MINUTE = env_int("PROBE_RUNS_PER_MINUTE", 10)
# How long each run's raw results are kept; the items' current state and state changes stay.
PROBE_RESULT_RETENTION_DAYS = env_float("PROBE_RESULT_RETENTION_DAYS", 30)


# The networks each probe site's workers may connect to, checked by the worker for every
# address (after resolving names): "site=cidr,cidr;other=cidr", "*" for any site without its
# own entry. Loopback only unless the operator opens more: the portal is no port scanner.
def parse_allowed_networks(text: str) -> dict[str, list[str]]:
    """ "site=cidr,cidr;other=cidr" as {site: [cidr]}; a mistake stops the process, saying which."""
    allowed: dict[str, list[str]] = {}
    for entry in filter(str.strip, text.split(";")):
        site, equals, networks = entry.partition("=")
        if not equals or not site.strip():
            raise ImproperlyConfigured(f"PROBE_ALLOWED_NETWORKS: {entry.strip()!r} is not site=networks.")
        try:
            cidrs = [str(ipaddress.ip_network(n.strip(), strict=True)) for n in networks.split(",") if n.strip()]
        except ValueError as exc:
            raise ImproperlyConfigured(f"PROBE_ALLOWED_NETWORKS: {entry.strip()!r}: {exc}.") from exc
        allowed[site.strip()] = cidrs
    return allowed


PROBE_ALLOWED_NETWORKS = parse_allowed_networks(env_str("PROBE_ALLOWED_NETWORKS", "*=127.0.0.0/8,::1/128"))
