"""The API's rate limits (README, "Limits and strict input"): per user for requests with a token or
a session, per client address for anonymous ones, counted in a cache every web process shares."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis
from django.conf import settings
from django.core.cache import BaseCache, caches
from rest_framework import throttling

from portal.client import client_ip

if TYPE_CHECKING:  # rest_framework.views imports this module (DEFAULT_THROTTLE_CLASSES)
    from rest_framework.request import Request
    from rest_framework.views import APIView

log = logging.getLogger(__name__)

# Redis when REDIS_URL is set (portal/settings/base.py).
CACHE = "throttle"


class SharedRate:
    """What both throttles add to DRF's: the rate read from the settings at each request (DRF's
    copies DEFAULT_THROTTLE_RATES once, at import, where a test's override_settings never reaches),
    the shared cache, the client's address as logins' throttling takes it, a Retry-After on every
    refusal, and a request let through (and logged) when the cache cannot be reached: a Redis
    outage must not make every answer a 500."""

    rate_setting: str

    @property
    def cache(self) -> BaseCache:
        return caches[CACHE]

    def get_rate(self) -> str | None:
        return getattr(settings, self.rate_setting)

    def get_ident(self, request: Request) -> str:
        return client_ip(request)

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)
        except redis.RedisError:
            log.warning("API rate limit not applied: its cache (Redis) is not reachable", exc_info=True)
            return True

    def wait(self) -> float:
        """Seconds until the oldest request that still counts leaves the window, so that the next
        is accepted. (DRF's own says nothing, so no Retry-After, when the window holds more
        requests than the rate allows, as after the rate was lowered.)"""
        return self.history[self.num_requests - 1] + self.duration - self.now


class UserRateThrottle(SharedRate, throttling.UserRateThrottle):
    """API_RATE_USER per user: a user has one token, and their browser session counts with it."""

    rate_setting = "API_RATE_USER"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None  # AnonRateThrottle's
        return super().get_cache_key(request, view)


class AnonRateThrottle(SharedRate, throttling.AnonRateThrottle):
    """API_RATE_ANON per client address, for requests without credentials."""

    rate_setting = "API_RATE_ANON"
