"""HTTP plumbing shared by the API clients: retries, rate-limit waits, pacing, redaction, progress.

One ``ApiSession`` per client. API-specific knowledge (how a 429 says how long to wait, which header holds
the remaining budget and when the window resets, how errors are enveloped) comes in through a small
``RateLimitPolicy``; everything else is common:

* 429: wait what the policy says (body hint, reset header, else exponential backoff) and try again. Waiting
  on a rate limit never counts as a failed attempt: a run never fails because the API asked it to slow down
  (a total wait cap, ``max_rate_limit_wait``, turns a permanently throttled API into a clear error).
* 5xx, connection errors, timeouts, truncated bodies: bounded exponential backoff with full jitter.
* Proactive pacing: when the remaining budget in the window is low, spread the remaining requests over the
  time left instead of running into a 429.
* The token is set once in the session headers and redacted from every message this module produces.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import orjson
import requests
from requests.adapters import HTTPAdapter


class ApiError(RuntimeError):
    """An API call failed for a reason retrying cannot fix. The message never contains the token."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class RetriesExhausted(ApiError):
    pass


@dataclass
class RateLimitPolicy:
    """How one API expresses rate limits. All callables receive the ``requests.Response``."""

    #: seconds to wait after a 429, or None if the response does not say
    wait_after_429: Callable[[requests.Response], float | None]
    #: (remaining requests, seconds until the window resets) from a successful response, or None
    budget: Callable[[requests.Response], tuple[int, float] | None] = lambda r: None
    #: start pacing when fewer than this many requests remain in the window
    pace_below: int = 5


@dataclass
class ApiStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "cdp/http_requests": self.requests,
            "cdp/http_retries": self.retries,
            "cdp/http_rate_limited": self.rate_limited,
            "cdp/http_wait_seconds": round(self.waited_seconds, 2),
        }


class ApiSession:
    def __init__(
        self,
        base_url: str,
        token: str,
        policy: RateLimitPolicy,
        *,
        headers: Mapping[str, str] | None = None,
        token_variable: str = "the API token",
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_rate_limit_wait: float = 3600.0,
        pool_size: int = 8,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_response: Callable[[requests.Response], None] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.token_variable = token_variable
        self.policy = policy
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_rate_limit_wait = max_rate_limit_wait
        self.log = logger or logging.getLogger("cdp_assets.http")
        self.sleep = sleep
        #: called with every response received (any status), e.g. by tests that validate traffic against a spec
        self.on_response = on_response
        self.stats = ApiStats()
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": "cdp_assets/0.1"})
        self._session.headers.update(headers or {})
        self._pace_lock = threading.Lock()
        self._not_before = 0.0

    # ------------------------------------------------------------------------------------------ helpers

    def redact(self, text: str) -> str:
        return text.replace(self._token, "[REDACTED]") if self._token else text

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def close(self) -> None:
        self._session.close()

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))

    def _wait(self, seconds: float, why: str) -> None:
        if seconds <= 0:
            return
        with self.stats.lock:
            self.stats.waited_seconds += seconds
        self.log.info(f"waiting {seconds:.2f}s: {why}")
        self.sleep(seconds)

    def _pace(self, response: requests.Response) -> None:
        budget = self.policy.budget(response)
        if budget is None:
            return
        remaining, reset_in = budget
        if remaining < self.policy.pace_below and reset_in > 0:
            with self._pace_lock:
                # spread what is left of the window evenly; at zero remaining, wait for the reset
                gap = reset_in / max(remaining, 1) if remaining > 0 else reset_in
                self._not_before = max(self._not_before, time.monotonic() + gap)

    def _respect_pacing(self) -> None:
        with self._pace_lock:
            delay = self._not_before - time.monotonic()
        if delay > 0:
            self._wait(delay, "pacing: the rate-limit budget is nearly used")

    # ------------------------------------------------------------------------------------------ requests

    def request(
        self, method: str, path: str, *, params: Any = None, json: Any = None, ok: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send with retries; return the response for any status in ``ok``, raise ``ApiError`` otherwise.

        Statuses outside ``ok`` that are not retryable are returned to the caller only through the raised
        ``ApiError`` (with ``status`` and the decoded ``body``) so callers can map them (401, 403, 404, 410…).
        """
        url = self.url(path)
        attempt = 0
        rate_waited = 0.0
        while True:
            self._respect_pacing()
            try:
                with self.stats.lock:
                    self.stats.requests += 1
                resp = self._session.request(method, url, params=params, json=json, headers=headers, timeout=self.timeout)
                body = resp.content  # read fully: a dropped connection mid-body raises here
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                attempt = self._retry_or_raise(attempt, f"{method} {path}: {type(exc).__name__}")
                continue
            with self.stats.lock:
                self.stats.bytes += len(body)
            if self.on_response is not None:
                self.on_response(resp)
            status = resp.status_code
            if status == 429:
                with self.stats.lock:
                    self.stats.rate_limited += 1
                wait = self.policy.wait_after_429(resp)
                if wait is None:
                    wait = self._backoff(min(attempt + 3, 10))
                wait = min(max(wait, 0.0), 3600.0)
                rate_waited += wait
                if rate_waited > self.max_rate_limit_wait:
                    raise ApiError(
                        f"{method} {self.base_url}{path}: still rate limited after waiting {rate_waited:.0f}s "
                        f"(limit max_rate_limit_wait={self.max_rate_limit_wait:.0f}s)", status,
                    )
                self._wait(wait, f"429 from {path}")
                continue
            if status >= 500 or status in (408,):
                attempt = self._retry_or_raise(attempt, f"{method} {path}: HTTP {status}")
                continue
            if status in ok:
                if resp.headers.get("Content-Length") and int(resp.headers["Content-Length"]) != len(body):
                    attempt = self._retry_or_raise(attempt, f"{method} {path}: truncated body")
                    continue
                self._pace(resp)
                return resp
            raise ApiError(self.redact(f"{method} {self.base_url}{path}: HTTP {status}"), status, _decode_or_text(body))

    def get_json(self, path: str, params: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        return self.json("GET", path, params=params, headers=headers)

    def json(
        self, method: str, path: str, *, params: Any = None, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Request and decode JSON; an undecodable body (truncated) is retried like a transport error."""
        attempt = 0
        while True:
            resp = self.request(method, path, params=params, json=json, headers=headers)
            try:
                return orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                attempt = self._retry_or_raise(attempt, f"{method} {path}: body is not valid JSON (truncated?)")

    def _retry_or_raise(self, attempt: int, what: str) -> int:
        attempt += 1
        if attempt >= self.max_attempts:
            raise RetriesExhausted(self.redact(f"{what}; gave up after {attempt} attempts"))
        with self.stats.lock:
            self.stats.retries += 1
        self._wait(self._backoff(attempt), self.redact(f"retrying after {what} (attempt {attempt + 1}/{self.max_attempts})"))
        return attempt


def _decode_or_text(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace")


class Progress:
    """Logs 'N records, M pages, R rec/s' at most every ``every`` seconds, for long runs in the Dagster UI."""

    def __init__(self, log: Any, what: str, every: float = 10.0, unit: str = "pages"):
        self.log, self.what, self.every, self.unit = log, what, every, unit
        self.records = self.pages = 0
        self.started = self._last = time.monotonic()

    def add(self, records: int, pages: int = 1) -> None:
        self.records += records
        self.pages += pages
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.log.info(f"{self.what}: {self.records:,} records, {self.pages:,} {self.unit}, {self.rate:,.0f} rec/s")

    @property
    def rate(self) -> float:
        return self.records / max(time.monotonic() - self.started, 1e-9)

    def done(self) -> None:
        self.log.info(f"{self.what}: done, {self.records:,} records in {self.pages:,} {self.unit} ({self.rate:,.0f} rec/s)")
