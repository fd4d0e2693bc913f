"""HTTP front of the simulated workspace: Intercom 2.16 routes, auth, rate-limit headers, 429s and faults.

Runs on loopback (``port=0`` picks a free port) in a daemon thread, or in its own process through
``python -m cdp_assets.intercom.simulator`` (benchmarks). Faults are queued per route and consumed in order:
``500``/``502``/``503``/``429`` statuses, ``slow`` responses, ``drop`` (connection closed with no response),
``truncate`` (half a body under a full ``Content-Length``) and ``loop`` (a search page whose next cursor repeats
an earlier one).
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .workspace import (
    PLANS,
    Workspace,
    WorkspaceConfig,
    company_id,
    contact_id,
    contact_n,
    conversation_id,
    conversation_n,
    decode_token,
    encode_token,
)

VERSIONS = {"1.0", "1.1", "1.2", "1.3", "1.4", *(f"2.{i}" for i in range(17))}


@dataclass
class Fault:
    kind: str  # "500" | "502" | "503" | "429" | "slow" | "drop" | "truncate" | "loop"
    path: str = ".*"  # regex on the path
    method: str | None = None
    times: int = 1
    delay: float = 0.0  # for "slow"


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class SimulatorServer:
    """The workspace behind a real HTTP server on loopback."""

    def __init__(self, workspace: Workspace | None = None, host: str = "127.0.0.1", port: int = 0):
        self.workspace = workspace or Workspace()
        self.faults: list[Fault] = []
        self.fault_lock = threading.Lock()
        self.window_start = 0.0
        self.window_count = 0
        self.rate_lock = threading.Lock()
        self.stats = {"requests": 0, "rate_limited": 0, "faults": 0}
        handler = type("Handler", (_Handler,), {"sim": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "SimulatorServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="intercom-sim", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def inject(self, kind: str, path: str = ".*", method: str | None = None, times: int = 1, delay: float = 0.0) -> None:
        with self.fault_lock:
            self.faults.append(Fault(kind, path, method, times, delay))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.fault_lock:
            for f in self.faults:
                if f.times > 0 and (f.method is None or f.method == method) and re.fullmatch(f.path, path):
                    f.times -= 1
                    self.stats["faults"] += 1
                    return f
        return None

    def rate_headers(self) -> tuple[bool, dict[str, str]]:
        """Count this request in the current window; (allowed, headers)."""
        cfg = self.workspace.config
        with self.rate_lock:
            now = time.time()
            if now - self.window_start >= cfg.rate_window_seconds:
                self.window_start = math.floor(now / cfg.rate_window_seconds) * cfg.rate_window_seconds
                self.window_count = 0
            self.window_count += 1
            remaining = max(cfg.rate_limit - self.window_count, 0)
            reset = math.ceil(self.window_start + cfg.rate_window_seconds)
            allowed = self.window_count <= cfg.rate_limit
        return allowed, {"X-RateLimit-Limit": str(cfg.rate_limit), "X-RateLimit-Remaining": str(remaining),
                         "X-RateLimit-Reset": str(reset)}


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"type": "error.list", "request_id": str(uuid.uuid4()),
                         "errors": [{"code": code, "message": message}]})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sim: SimulatorServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stdout
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _send(self, status: int, body: bytes, headers: dict[str, str], truncate: bool = False) -> None:
        reason = self.responses.get(status, ("",))[0]
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        if truncate:
            head.append("Connection: close")
        # one write: a separate header write would meet Nagle's algorithm and the client's delayed ACK
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body[: len(body) // 2] if truncate else body))
        if truncate:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self, method: str) -> None:
        sim = self.sim
        ws = sim.workspace
        url = urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim.stats["requests"] += 1
        if self.headers.get("Authorization") != f"Bearer {ws.config.token}":
            self._send(401, error_body("unauthorized", "Access Token Invalid"), {})
            return
        fault = sim.take_fault(method, path)
        if fault and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)
        allowed, rate = sim.rate_headers()
        if not allowed or (fault and fault.kind == "429"):
            sim.stats["rate_limited"] += 1
            self._send(429, error_body("rate_limit_exceeded",
                                       f"Exceeded rate limit of {ws.config.rate_limit} in 10_seconds"), rate)
            return
        if fault and fault.kind in ("500", "502", "503"):
            if path == "/companies/scroll":
                with ws.lock:
                    ws.scroll = None  # a scroll cannot survive a server error: the client must restart
            code = "server_error" if fault.kind == "500" else "service_unavailable"
            msg = ("Request failed due to an internal network error. Please restart the scroll operation."
                   if path == "/companies/scroll" else "Server error")
            self._send(int(fault.kind), error_body(code, msg), rate)
            return
        version = self.headers.get("Intercom-Version", "2.16")
        try:
            if version not in VERSIONS:
                raise HttpError(400, "intercom_version_invalid", f"The requested version {version} does not exist")
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            body = orjson.loads(raw) if raw else {}
            with ws.lock:
                ws.requests.append((method, path))
                ws.run_hooks(method, path)
                payload, headers = route(ws, method, path, query, body, version, fault)
            self._send(200, orjson.dumps(payload), {**rate, **headers}, truncate=bool(fault and fault.kind == "truncate"))
        except HttpError as e:
            self._send(e.status, error_body(e.code, e.message), {**rate, **e.headers})
        except (ValueError, KeyError, TypeError) as e:
            self._send(400, error_body("parameter_invalid", str(e)), rate)


# ---------------------------------------------------------------------------------------------- routes


def _per_page(value: Any, default: int, maximum: int = 150) -> int:
    n = int(value) if value is not None else default
    if not 1 <= n <= maximum:
        raise HttpError(400, "parameter_invalid", f"per_page must be between 1 and {maximum}")
    return n


def route(ws: Workspace, method: str, path: str, q: dict, body: dict, version: str, fault: Fault | None):
    parts = path.strip("/").split("/")
    key = (method, parts[0] if parts else "", len(parts))
    if key == ("GET", "me", 1):
        return me(ws), {}
    if key == ("GET", "contacts", 1):
        return list_contacts(ws, q), {}
    if key == ("POST", "contacts", 2) and parts[1] == "search":
        return search(ws, "contacts", body, q, fault), {}
    if key == ("GET", "contacts", 2):
        return get_contact(ws, parts[1])
    if key == ("GET", "companies", 2) and parts[1] == "scroll":
        return scroll(ws, q), {}
    if key == ("GET", "conversations", 1):
        return list_conversations(ws, q), {}
    if key == ("POST", "conversations", 2) and parts[1] == "search":
        return search(ws, "conversations", body, q, fault), {}
    if key == ("GET", "conversations", 2) and parts[1] == "deleted":
        if version != "2.16":
            raise HttpError(400, "intercom_version_invalid", "GET /conversations/deleted needs Intercom-Version 2.16")
        return deleted_conversations(ws, q), {}
    if key == ("GET", "conversations", 2):
        n = conversation_n(parts[1])
        if n is None or n >= ws.config.conversations or n in ws.v_deleted:
            raise HttpError(404, "not_found", "Resource Not Found")
        return ws.conversation(n), {}
    if key == ("GET", "tags", 1):
        return {"type": "list", "data": [{"type": "tag", "id": str(100 + i), "name": f"tag-{i}"}
                                         for i in range(ws.config.tags)]}, {}
    if key == ("GET", "segments", 1):
        return {"type": "segment.list", "pages": {}, "segments": [
            {"type": "segment", "id": f"5e{i:022x}", "name": f"Segment {i}", "created_at": ws.anchor - 100 * 86_400,
             "updated_at": ws.anchor - i * 86_400, "person_type": "user" if i % 2 else "contact",
             **({"count": 10 * (i + 1)} if q.get("include_count") == "true" else {})}
            for i in range(ws.config.segments)]}, {}
    if key == ("GET", "admins", 1):
        return {"type": "admin.list", "admins": [
            {"type": "admin", "id": str(1000 + i), "name": f"Admin {i}", "email": f"admin{i}@example.com",
             "job_title": "Support", "away_mode_enabled": False, "away_mode_reassign": False,
             "has_inbox_seat": True, "team_ids": [2000 + i % max(ws.config.teams, 1)], "avatar": None}
            for i in range(ws.config.admins)]}, {}
    if key == ("GET", "teams", 1):
        return {"type": "team.list", "teams": [
            {"type": "team", "id": str(2000 + t), "name": f"Team {t}",
             "admin_ids": [1000 + i for i in range(ws.config.admins) if i % max(ws.config.teams, 1) == t],
             "assignment_limit": None, "distribution_method": "round_robin"}
            for t in range(ws.config.teams)]}, {}
    raise HttpError(404, "not_found", f"No route for {method} {path}")


def me(ws: Workspace) -> dict:
    return {"type": "admin", "id": "1000", "name": "Admin 0", "email": "admin0@example.com", "job_title": "Support",
            "away_mode_enabled": False, "away_mode_reassign": False, "has_inbox_seat": True, "team_ids": [],
            "email_verified": True,
            "app": {"type": "app", "id_code": "simws01", "name": "Simulated workspace", "region": "US",
                    "timezone": ws.config.timezone, "created_at": ws.anchor - 400 * 86_400,
                    "identity_verification": False}}


def _cursor_pages(page: int, per_page: int, total: int, next_token: str | None) -> dict:
    pages: dict[str, Any] = {"type": "pages", "page": page, "per_page": per_page,
                             "total_pages": max(1, -(-total // per_page))}
    if next_token:
        pages["next"] = {"per_page": per_page, "starting_after": next_token}
    return pages


def _keyset(q: dict, count: int, live: Any, per_page: int) -> tuple[list[int], str | None, int]:
    """List endpoints: cursor = the last number served (stable under updates, like an id-ordered list)."""
    token = q.get("starting_after")
    after = -1
    if token:
        state = decode_token(token)
        if not state or "a" not in state:
            raise HttpError(400, "parameter_invalid", "starting_after is not a valid cursor")
        after = int(state["a"])
    ns = []
    n = after + 1
    while n < count and len(ns) < per_page:
        if live(n):
            ns.append(n)
        n += 1
    more = any(live(m) for m in range(n, count))  # stops at the first live record
    return ns, encode_token({"a": ns[-1]}) if ns and more else None, after


def list_contacts(ws: Workspace, q: dict) -> dict:
    per_page = _per_page(q.get("per_page"), 10)
    ns, token, _ = _keyset(q, ws.config.contacts, lambda n: n not in ws.c_status, per_page)
    total = ws.config.contacts - len(ws.c_status)
    history = q.get("include_merge_history") == "true"
    return {"type": "list", "data": [ws.contact_json(n, history) for n in ns], "total_count": total,
            "pages": _cursor_pages(1, per_page, total, token)}


def list_conversations(ws: Workspace, q: dict) -> dict:
    per_page = _per_page(q.get("per_page"), 20)
    ns, token, _ = _keyset(q, ws.config.conversations, lambda n: n not in ws.v_deleted, per_page)
    total = ws.config.conversations - len(ws.v_deleted)
    return {"type": "conversation.list", "conversations": [ws.conversation_item(n) for n in ns],
            "total_count": total, "pages": _cursor_pages(1, per_page, total, token)}


def get_contact(ws: Workspace, cid: str) -> tuple[dict, dict]:
    n = contact_n(cid)
    if n is None or n >= ws.config.contacts:
        raise HttpError(404, "not_found", "User Not Found")
    status = ws.c_status.get(n)
    if status is None:
        return ws.contact(n), {}
    target = ws.canonical(n)
    if status[0] == "merged" and target is not None:
        raise HttpError(410, "contact_merged", "Contact has been merged",
                        {"Link": f'</contacts/{contact_id(target)}>; rel="canonical"'})
    raise HttpError(404, "not_found", "User Not Found")


def search(ws: Workspace, what: str, body: dict, q: dict, fault: Fault | None) -> dict:
    if "query" not in body:
        raise HttpError(400, "parameter_missing", "query is required")
    sort = body.get("sort") or {}
    order = sort.get("order", "descending")
    if order not in ("ascending", "descending"):
        raise HttpError(400, "invalid_sort_order", f"Sort order {order!r} is invalid; use ascending or descending")
    if sort.get("field", "updated_at") != "updated_at":
        raise HttpError(400, "parameter_invalid", "the simulator sorts on updated_at only")
    paging = body.get("pagination") or {}
    contacts = what == "contacts"
    per_page = _per_page(paging.get("per_page"), 50 if contacts else 20)
    try:
        intervals = ws.intervals(body["query"], "updated_at", by_day=contacts)
    except ValueError as e:
        raise HttpError(400, "parameter_invalid", str(e)) from None
    ns = ws.search(ws.c_index if contacts else ws.v_index, intervals, order == "descending")
    # Stateless offset cursor: what Intercom's opaque token behaves like when records move under it.
    offset = 0
    if paging.get("starting_after"):
        state = decode_token(paging["starting_after"])
        if not state or "o" not in state:
            raise HttpError(400, "parameter_invalid", "starting_after is not a valid cursor")
        offset = int(state["o"])
    page_ns = ns[offset: offset + per_page]
    end = offset + len(page_ns)
    token = encode_token({"o": end}) if end < len(ns) else None
    if fault and fault.kind == "loop" and offset > 0:
        token = paging["starting_after"]  # the cursor repeats: A -> B -> B
    history = q.get("include_merge_history") == "true"
    records = [ws.contact_json(n, history) for n in page_ns] if contacts else [ws.conversation_item(n) for n in page_ns]
    page = offset // per_page + 1
    return {"type": "list" if contacts else "conversation.list", ("data" if contacts else "conversations"): records,
            "total_count": len(ns), "pages": _cursor_pages(page, per_page, len(ns), token)}


def scroll(ws: Workspace, q: dict) -> dict:
    now = time.monotonic()
    param = q.get("scroll_param")
    s = ws.scroll
    if s is not None and now - s["last_used"] > ws.config.scroll_expiry_seconds:
        ws.scroll = s = None  # expired while idle
    if not param:
        if s is not None:
            raise HttpError(400, "client_error", "scroll already exists for this workspace")
        ws.scroll = s = {"param": uuid.uuid4().hex, "offset": 0, "last_used": now}
    elif s is None or s["param"] != param:
        raise HttpError(404, "not_found", "scroll_param not found or expired; restart the scroll")
    batch = range(s["offset"], min(s["offset"] + 50, ws.config.companies))
    s["offset"] += len(batch)
    s["last_used"] = now
    if not batch:
        ws.scroll = None  # an empty page ends the scroll
    return {"type": "list", "data": [ws.company(n) for n in batch], "pages": None,
            "total_count": None, "scroll_param": s["param"]}


def deleted_conversations(ws: Workspace, q: dict) -> dict:
    per_page = _per_page(q.get("per_page"), 20, 60)
    page = int(q.get("page") or 1)
    items = sorted(ws.v_deleted.items(), key=lambda kv: (kv[1], kv[0]), reverse=q.get("order", "desc") != "asc")
    total_pages = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    nxt = f"https://api.intercom.io/conversations/deleted?page={page + 1}&per_page={per_page}" if page < total_pages else None
    return {"type": "conversations.deleted", "total_count": len(items),
            "conversations": [{"type": "deleted_conversation", "id": conversation_id(n), "deleted_at": at,
                               "metrics_retained": False} for n, at in chunk],
            "pages": {"type": "pages", "page": page, "per_page": per_page, "total_pages": total_pages, "next": nxt}}


def start_simulator(config: WorkspaceConfig | None = None, port: int = 0) -> SimulatorServer:
    return SimulatorServer(Workspace(config), port=port).start()


__all__ = ["Fault", "SimulatorServer", "start_simulator", "PLANS", "company_id"]
