"""Intercom REST client (API 2.16) on the shared ``ApiSession``: region hosts, paging models, error envelope.

Everything here streams: each paging method yields one page of records at a time, so no caller ever holds
a whole collection. Paging rules follow the contract (``intercom.md`` §6):

* cursor paging (``pages.next.starting_after``) at the largest page size (150), stopping on a missing
  ``next`` **or on a token that was already used** (search cursors have been seen to loop);
* the company scroll: one at a time, restarted from the beginning on a 5xx or an expired ``scroll_param``;
* page-number paging for ``GET /conversations/deleted``.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import orjson
import requests
import simdjson

from ..shared.http import ApiError, ApiSession, Progress, RateLimitPolicy, RetriesExhausted

API_VERSION = "2.16"  # a string on purpose: YAML/Jinja once turned 2.10 into 2.1 (contract §1)
PER_PAGE = 150  # the maximum page size of every Intercom list and search
DELETED_PER_PAGE = 60  # GET /conversations/deleted allows at most 60
REGION_HOSTS = {
    "US": "https://api.intercom.io",
    "EU": "https://api.eu.intercom.io",
    "AU": "https://api.au.intercom.io",
}
_LINK_CANONICAL = re.compile(r"<([^>]+)>\s*;\s*rel=\"?canonical\"?")


def _reset_in(resp: requests.Response) -> float | None:
    reset = resp.headers.get("X-RateLimit-Reset")
    if not reset:
        return None
    try:
        return max(float(reset) - time.time(), 0.0)
    except ValueError:
        return None


def _budget(resp: requests.Response) -> tuple[int, float] | None:
    remaining, reset_in = resp.headers.get("X-RateLimit-Remaining"), _reset_in(resp)
    if remaining is None or reset_in is None:
        return None
    try:
        return int(remaining), reset_in
    except ValueError:
        return None


def rate_limit_policy() -> RateLimitPolicy:
    """Intercom spreads its budget over 10-second windows: after a 429 sleep until ``X-RateLimit-Reset``
    (unix seconds; +0.1 s so we land inside the new window); pace only when the window is nearly used."""
    return RateLimitPolicy(
        wait_after_429=lambda r: None if (w := _reset_in(r)) is None else w + 0.1,
        budget=_budget,
        pace_below=10,
    )


class IntercomError(ApiError):
    """An Intercom call failed; the message carries status, error code, message and request id."""

    def __init__(self, message: str, status: int | None = None, body: Any = None, code: str | None = None,
                 request_id: str | None = None):
        super().__init__(message, status, body)
        self.code, self.request_id = code, request_id


def describe_error(method: str, path: str, status: int | None, body: Any) -> tuple[str, str | None, str | None]:
    """(message, code, request_id) from Intercom's ``error.list`` envelope (contract §5)."""
    code = rid = None
    detail = ""
    if isinstance(body, dict) and body.get("type") == "error.list":
        rid = body.get("request_id")
        errors = body.get("errors") or []
        if errors:
            code = errors[0].get("code")
            detail = "; ".join(f"{e.get('code')}: {e.get('message') or ''}".rstrip(": ") for e in errors)
    elif body:
        detail = str(body)[:200]
    msg = f"Intercom {method} {path} failed: HTTP {status}" + (f" {detail}" if detail else "")
    if rid:
        msg += f" (request_id {rid})"
    return msg, code, rid


@dataclass
class Page:
    records: list[dict]
    total_count: int | None
    next_token: str | None
    raw: bytes | None = None  # the response body the records were decoded from (None: not one response's)


def slim_decoder(records_key: str, fields: tuple[str, ...]) -> Callable[[bytes], dict]:
    """A page decoder that reads only what paging needs: ``fields`` of each record under ``records_key``,
    ``total_count`` and ``pages.next``, in the shape ``orjson.loads`` would give (records as dicts of just
    those fields; ``None`` where a field is absent). The rest of the body is never turned into Python
    objects: the warehouse reads it from ``Page.raw`` (``Collection.frame_from_pages``).

    simdjson parses a 200 KB page of 150 contacts in ~0.1 ms and the three fields paging reads in ~0.04 ms;
    ``orjson.loads`` of the whole page takes 1.1-1.3 ms (measured on the simulator's pages), and that was
    half of the fetching thread's CPU. A body simdjson refuses (an integer beyond 64 bits, say) is decoded
    whole by orjson instead, so a truncated body still fails as ``orjson.JSONDecodeError`` and is retried."""
    parser = simdjson.Parser()  # one document at a time: every value is copied out before the next parse

    def decode(raw: bytes) -> dict:
        try:
            return _slim(parser.parse(raw), records_key, fields)
        except (ValueError, RuntimeError, AttributeError):
            return orjson.loads(raw)

    return decode


def _slim(doc: Any, records_key: str, fields: tuple[str, ...]) -> dict:
    records = doc.get(records_key) if isinstance(doc, simdjson.Object) else None
    pages = doc.get("pages") if isinstance(doc, simdjson.Object) else None
    nxt = pages.get("next") if isinstance(pages, simdjson.Object) else None
    return {
        records_key: [{f: _python(r.get(f)) for f in fields} for r in records] if records else [],
        "total_count": doc.get("total_count"),
        "pages": {"next": _python(nxt)},
    }


def _python(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


@dataclass
class PagingReport:
    """What a paged read observed: used by the incremental reader to decide whether to re-page."""

    pages: int = 0
    records: int = 0
    looped: bool = False
    totals: list[int] = field(default_factory=list)


class IntercomClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        scroll_busy_wait: float = 60.0,
        scroll_restarts: int = 5,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_response: Callable[[requests.Response], None] | None = None,
    ):
        self.log = logger or logging.getLogger("cdp_assets.intercom")
        headers = {"Intercom-Version": API_VERSION, "Accept": "application/json"}
        common = dict(policy=rate_limit_policy(), headers=headers, token_variable="INTERCOM_ACCESS_TOKEN",
                      timeout=timeout, backoff_base=backoff_base, logger=self.log, sleep=sleep,
                      on_response=on_response)
        self.session = ApiSession(base_url, token, max_attempts=max_attempts, **common)
        # A scroll cannot be resumed after a server error (its scroll_param dies with it), so scroll calls
        # are not retried by the session: the scroll loop restarts from the beginning instead.
        self.scroll_session = ApiSession(base_url, token, max_attempts=1, **common)
        self.scroll_busy_wait = scroll_busy_wait
        self.scroll_restarts = scroll_restarts
        self.sleep = sleep

    def close(self) -> None:
        self.session.close()
        self.scroll_session.close()

    @property
    def stats_metadata(self) -> dict[str, Any]:
        a, b = self.session.stats, self.scroll_session.stats
        return {
            "cdp/http_requests": a.requests + b.requests,
            "cdp/http_retries": a.retries + b.retries,
            "cdp/http_rate_limited": a.rate_limited + b.rate_limited,
            "cdp/http_wait_seconds": round(a.waited_seconds + b.waited_seconds, 2),
        }

    # ------------------------------------------------------------------------------------------ calls

    def call(self, method: str, path: str, *, params: Any = None, json: Any = None,
             ok: tuple[int, ...] = (200,), session: ApiSession | None = None,
             decode: Callable[[bytes], Any] = orjson.loads) -> tuple[int, Any, requests.Response]:
        """One request with retries; (status, decoded body, response). Errors become ``IntercomError``."""
        s = session or self.session
        attempt = 0
        while True:
            try:
                resp = s.request(method, path, params=params, json=json, ok=ok)
            except RetriesExhausted:
                raise
            except ApiError as e:
                msg, code, rid = describe_error(method, path, e.status, e.body)
                raise IntercomError(s.redact(msg), e.status, e.body, code, rid) from None
            try:
                return resp.status_code, decode(resp.content), resp
            except orjson.JSONDecodeError:  # a body cut short without a Content-Length to tell
                attempt = s._retry_or_raise(attempt, f"{method} {path}: body is not valid JSON (truncated?)")

    def get(self, path: str, params: Any = None) -> Any:
        return self.call("GET", path, params=params)[1]

    def workspace_timezone(self) -> str | None:
        """``GET /me`` -> ``app.timezone``: the zone whose days contact date search matches (contract §2)."""
        app = self.get("/me").get("app") or {}
        return app.get("timezone")

    # ------------------------------------------------------------------------------------------ paging

    def cursor_pages(self, method: str, path: str, records_key: str, *, body: dict | None = None,
                     params: dict | None = None, report: PagingReport | None = None,
                     fields: tuple[str, ...] | None = None) -> Iterator[Page]:
        """Cursor paging for lists (query ``starting_after``) and searches (body ``pagination``).

        ``fields``: decode only these fields of each record (``Page.raw`` keeps the whole body for the
        warehouse): see ``slim_decoder``."""
        report = report if report is not None else PagingReport()
        progress = Progress(self.log, f"intercom {method} {path}")  # records so far and rate, every 10 s
        decode = orjson.loads if fields is None else slim_decoder(records_key, fields)
        used: set[str] = set()
        token: str | None = None
        while True:
            if method == "POST":
                pagination = {"per_page": PER_PAGE, **({"starting_after": token} if token else {})}
                _, data, resp = self.call("POST", path, params=params,
                                          json={**(body or {}), "pagination": pagination}, decode=decode)
            else:
                _, data, resp = self.call("GET", path, params={**(params or {}), "per_page": PER_PAGE,
                                                              **({"starting_after": token} if token else {})},
                                          decode=decode)
            records = data.get(records_key) or []
            nxt = ((data.get("pages") or {}).get("next") or {})
            token = nxt.get("starting_after") if isinstance(nxt, dict) else None
            report.pages += 1
            report.records += len(records)
            progress.add(len(records))
            if data.get("total_count") is not None:
                report.totals.append(int(data["total_count"]))
            yield Page(records, data.get("total_count"), token, resp.content)
            if not token:
                progress.done()
                return
            if token in used:
                report.looped = True
                self.log.warning(f"{path}: the next-page cursor repeated; stopping this pass")
                return
            used.add(token)

    def scroll_companies(self) -> Iterator[list[dict]]:
        """One pass of ``GET /companies/scroll``, batch by batch; any failure ends the pass (no retries:
        the scroll cannot be resumed) and ``read_companies`` starts a new one."""
        param: str | None = None
        progress = Progress(self.log, "intercom GET /companies/scroll")
        while True:
            _, data, _ = self.call("GET", "/companies/scroll",
                                        params={"scroll_param": param} if param else None, session=self.scroll_session)
            batch = data.get("data") or []
            if not batch:
                progress.done()
                return
            progress.add(len(batch))
            param = data.get("scroll_param")
            yield batch

    def read_companies(self) -> list[dict]:
        """All companies from one complete scroll, restarted from scratch on any scroll failure. Companies
        are few (Intercom lists at most tens of thousands); buffering them makes a restart trivially safe."""
        for attempt in range(self.scroll_restarts + 1):
            rows: list[dict] = []
            try:
                for batch in self.scroll_companies():
                    rows.extend(batch)
                return rows
            except (IntercomError, RetriesExhausted) as e:
                busy = "scroll already exists" in str(e)
                if attempt == self.scroll_restarts or (isinstance(e, IntercomError) and e.status in (401, 403)):
                    raise
                wait = self.scroll_busy_wait if busy else min(2.0 ** attempt, 30.0)
                self.log.warning(f"company scroll failed ({e}); restarting from the beginning in {wait:.1f}s")
                self.sleep(wait)
        raise AssertionError("unreachable")

    def deleted_conversations(self, since: int | None) -> Iterator[dict]:
        """Tombstones from ``GET /conversations/deleted`` newest first, stopping at ``since``."""
        page = 1
        while True:
            data = self.get("/conversations/deleted", {"page": page, "per_page": DELETED_PER_PAGE, "order": "desc"})
            items = data.get("conversations") or []
            for item in items:
                if since is not None and int(item.get("deleted_at") or 0) < since:
                    return
                yield item
            pages = data.get("pages") or {}
            if not items or not pages.get("next") or page >= int(pages.get("total_pages") or page):
                return
            page += 1

    def contact_fate(self, contact_id: str) -> tuple[str, str | None]:
        """Why a contact vanished from list/search: ("live", None), ("merged", canonical id) from a 410 with
        ``Link: </contacts/{id}>; rel="canonical"``, or ("archived", None) for a 404 (archived or deleted:
        the API does not tell them apart)."""
        status, data, resp = self.call("GET", f"/contacts/{contact_id}", ok=(200, 404, 410))
        if status == 200:
            return "live", None
        if status == 410:
            m = _LINK_CANONICAL.search(resp.headers.get("Link", ""))
            return "merged", m.group(1).rstrip("/").rsplit("/", 1)[-1] if m else None
        return "archived", None

    def conversation(self, conversation_id: str) -> dict | None:
        """A full conversation with its parts, or None if it was deleted meanwhile (404: skip it)."""
        status, data, _ = self.call("GET", f"/conversations/{conversation_id}", ok=(200, 404))
        return data if status == 200 else None
