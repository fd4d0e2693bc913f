"""Segment Public API client: hosts, Bearer auth, rate limits, cursor pagination, error mapping.

Built on ``shared/http.py`` (retries, 429 waits, pacing, redaction); this module adds what is Segment's own
(contract ``segment.md``):

* hosts per region (§1); ``Authorization: Bearer`` (never the raw token, unlike tap-segment);
* the 429 wait from ``errors[0].data.msBeforeNext`` (documented body), else ``X-RateLimit-Reset`` (an RFC 5322
  date), else ``Retry-After``; both 429 body shapes are accepted (§8). Pacing reads ``X-RateLimit-Remaining``;
* pagination: ``pagination.count=200`` (valid for both the v32 spec and the current API) and
  ``pagination.cursor``, following ``data.pagination.next`` until it is empty; a repeated cursor stops the
  walk with a clear error instead of looping forever (§3). Pages are yielded one at a time;
* 401 -> ``SegmentAuthError`` naming the host and the variable holding the token; 403 -> ``SegmentForbidden``,
  which callers map to "not entitled" on the gated objects (§9).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import requests

from ..shared.http import ApiError, ApiSession, ApiStats, RateLimitPolicy
from .catalog import JSON

HOSTS = {"us": "https://api.segmentapis.com", "eu": "https://eu1.api.segmentapis.com"}
TOKEN_VARIABLE = "SEGMENT_API_TOKEN"
PAGE_SIZE = 200  # valid under the v32 spec (1-200) and the current API (1-1000); contract §3


class SegmentAuthError(ApiError):
    """401: the token is missing, invalid, for another region, or lacks permission."""


class SegmentForbidden(ApiError):
    """403: on plan- or feature-limited objects this means the workspace is not entitled."""


class CursorLoopError(ApiError):
    """The API handed back a cursor this walk had already followed."""


def pagination_params(count: int = PAGE_SIZE, cursor: str | None = None) -> dict[str, Any]:
    """The one place that knows how pagination is encoded on the wire: the documented dot form.

    (The v32 spec declares the deepObject form ``pagination[count]``; the docs, Airbyte and every current SDK
    example use ``pagination.count``. Tests translate when validating against the spec.)
    """
    params: dict[str, Any] = {"pagination.count": count}
    if cursor:
        params["pagination.cursor"] = cursor
    return params


def _reset_in(response: requests.Response) -> float | None:
    raw = response.headers.get("X-RateLimit-Reset")
    if not raw:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return (when - dt.datetime.now(dt.timezone.utc)).total_seconds()


def wait_after_429(response: requests.Response) -> float | None:
    """Seconds to wait: body ``msBeforeNext``, else the reset header, else ``Retry-After``, else None."""
    try:
        errors = response.json().get("errors") or []
        data = (errors[0] or {}).get("data") or {}
        ms = data.get("msBeforeNext") if isinstance(data, dict) else None
        if ms is not None:
            return max(float(ms) / 1000.0, 0.0)
    except (ValueError, AttributeError, IndexError, TypeError):
        pass  # the spec's example body ({"type": "RateLimited", ...}) has no hint: fall through
    reset = _reset_in(response)
    if reset is not None:
        # the header has one-second resolution: wait at least a little so we do not spin on a stale second
        return max(reset, 0.05)
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            return None
    return None


def remaining_budget(response: requests.Response) -> tuple[int, float] | None:
    remaining = response.headers.get("X-RateLimit-Remaining")
    reset = _reset_in(response)
    if remaining is None or reset is None:
        return None
    try:
        return int(remaining), max(reset, 0.0)
    except ValueError:
        return None


SEGMENT_RATE_LIMITS = RateLimitPolicy(wait_after_429=wait_after_429, budget=remaining_budget, pace_below=3)


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]] | dict[str, Any]
    next_cursor: str | None
    total: int | None


class SegmentClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        token_variable: str = TOKEN_VARIABLE,
        page_size: int = PAGE_SIZE,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        max_rate_limit_wait: float = 3600.0,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_response: Callable[[requests.Response], None] | None = None,
    ):
        if not token:
            raise SegmentAuthError(f"no Segment API token: set {token_variable} (a workspace token for {base_url})")
        self.base_url = base_url.rstrip("/")
        self.token_variable = token_variable
        self.page_size = page_size
        self.session = ApiSession(
            self.base_url, token, SEGMENT_RATE_LIMITS, token_variable=token_variable, timeout=timeout,
            max_attempts=max_attempts, backoff_base=backoff_base, max_rate_limit_wait=max_rate_limit_wait,
            logger=logger, sleep=sleep, on_response=on_response, headers={"Accept": JSON},
        )

    @property
    def stats(self) -> ApiStats:
        return self.session.stats

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> SegmentClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ calls

    def get(self, path: str, params: Mapping[str, Any] | None = None, accept: str = JSON) -> dict[str, Any]:
        """One GET; returns the ``data`` object of the envelope."""
        try:
            body = self.session.get_json(path, params=dict(params or {}), headers={"Accept": accept})
        except ApiError as exc:
            raise self._map_error(exc, path) from None
        if not isinstance(body, dict) or "data" not in body:
            raise ApiError(f"GET {self.base_url}{path}: response has no 'data' envelope", body=body)
        return body["data"]

    def pages(
        self, path: str, records_key: str, params: Mapping[str, Any] | None = None, accept: str = JSON
    ) -> Iterator[Page]:
        """Yield each page of a cursor-paginated list, following ``data.pagination.next`` to the end."""
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            data = self.get(path, {**(params or {}), **pagination_params(self.page_size, cursor)}, accept)
            pagination = data.get("pagination") or {}
            nxt = pagination.get("next") or None
            yield Page(data.get(records_key) or [], nxt, pagination.get("totalEntries"))
            if not nxt:
                return
            if nxt in seen or nxt == cursor:
                raise CursorLoopError(
                    f"GET {self.base_url}{path}: the API returned cursor {nxt[:40]!r} a second time; stopping "
                    f"instead of looping (after {len(seen) + 1} pages)"
                )
            seen.add(nxt)
            cursor = nxt

    def _map_error(self, exc: ApiError, path: str) -> ApiError:
        if exc.status == 401:
            return SegmentAuthError(
                f"Segment rejected the token (HTTP 401) at {self.base_url}{path}: the token in {self.token_variable} is "
                f"missing, invalid, belongs to a workspace in another region (check the region setting), or lacks "
                f"permission", 401, exc.body,
            )
        if exc.status == 403:
            return SegmentForbidden(f"HTTP 403 from {self.base_url}{path}: the workspace or token may not use it", 403, exc.body)
        return exc
