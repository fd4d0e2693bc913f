"""Validate HTTP traffic (``requests`` objects) against the two official OpenAPI specs, for tests.

Shared by every API area's tests (Segment, Intercom). Each spec is loaded once per process (a load takes
1-2 s) exactly as ``shared/contracts/README.md`` prescribes:

* ``segment``: an **in-memory patched copy** of ``segment-public-api.yaml`` (v32.0.5): the EU server is added,
  deepObject query parameters are made parseable, and ``application/json`` is added where the live API serves
  it but the old spec does not (drift items 2-4). The file itself is never edited.
* ``intercom``: ``intercom-openapi.yaml`` with openapi-core's spec check skipped (two unused reporting paths
  fail it).

Requests to a local simulator (``http://127.0.0.1:PORT/...``) are validated as if they had been sent to a spec
server: the scheme and host are swapped for ``server`` (default: the spec's first server), the path and the
query are kept. For Segment, the documented dot form ``pagination.count`` is translated to the spec's
deepObject form ``pagination[count]`` before validation, so both encodings validate.

    api = load_spec("segment")
    validate_request(api, response.request)
    validate_response(api, response.request, response)

Errors raise openapi-core's validation exceptions (tests let them propagate). Statuses the spec does not list
(Segment 401/403/5xx, Intercom 429/500) cannot be validated by operation; ``validate_error_body`` checks such
bodies against the error envelope schema instead.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import requests
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.validation.schemas import oas30_read_schema_validators_factory

Api = Literal["segment", "intercom"]

SPEC_FILES = {"segment": "segment-public-api.yaml", "intercom": "intercom-openapi.yaml"}
SEGMENT_EU_SERVER = "https://eu1.api.segmentapis.com"
#: error envelope schema per API, for statuses the spec does not list on the operation
ERROR_SCHEMAS = {"segment": "RequestErrorEnvelope", "intercom": "error"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def contracts_dir() -> Path:
    """``CDP_CONTRACTS_DIR``, else ``../shared/contracts`` next to the repository (where the issues point)."""
    configured = os.environ.get("CDP_CONTRACTS_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "contracts"
    if not path.is_dir():
        raise FileNotFoundError(f"OpenAPI contracts not found at {path}; set CDP_CONTRACTS_DIR to the contracts folder")
    return path


@functools.cache
def _spec_dict(api: Api) -> dict[str, Any]:
    with open(contracts_dir() / SPEC_FILES[api], encoding="utf-8") as f:
        spec = yaml.safe_load(f)  # in-memory copy only: the YAML files are never edited
    if api == "segment":
        _patch_segment(spec)
    return spec


def _patch_segment(spec: dict[str, Any]) -> None:
    """The documented workarounds (contracts README, "How to use the specs")."""
    spec["servers"].append({"url": SEGMENT_EU_SERVER})
    for item in spec["paths"].values():
        for op in (o for o in item.values() if isinstance(o, dict)):
            for p in op.get("parameters", []):
                if p.get("in") == "query" and p.get("style") == "deepObject":
                    if p["name"] == "pagination":
                        p["explode"] = True  # parses pagination[count], pagination[cursor]
                    else:
                        p["style"], p["explode"] = "form", True  # openapi-core cannot read deepObject+explode=false
            ok = op.get("responses", {}).get("200", {}).get("content")
            if ok and "application/json" not in ok:  # drift items 2-4
                ok["application/json"] = next(iter(ok.values()))


_NAMES: dict[int, Api] = {}


@functools.cache
def load_spec(api: Api) -> OpenAPI:
    """The validator for ``api``, built once per process."""
    spec = copy.deepcopy(_spec_dict(api))
    config = Config(spec_validator_cls=None) if api == "intercom" else None
    validator = OpenAPI.from_dict(spec, config=config) if config else OpenAPI.from_dict(spec)
    _NAMES[id(validator)] = api
    return validator


def _api_name(api: OpenAPI | Api) -> Api:
    if isinstance(api, str):
        if api not in SPEC_FILES:
            raise ValueError(f"unknown api {api!r}; expected one of {sorted(SPEC_FILES)}")
        return api
    try:
        return _NAMES[id(api)]
    except KeyError:
        raise ValueError("pass the OpenAPI object returned by load_spec() or the api name") from None


def servers(api: Api) -> list[str]:
    return [s["url"] for s in _spec_dict(api)["servers"]]


def _deep_query(query: str) -> str:
    """``pagination.count`` (documented form) -> ``pagination[count]`` (the spec's deepObject form)."""
    pairs = [(re.sub(r"^pagination\.(\w+)$", r"pagination[\1]", k), v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return urlencode(pairs)


def as_spec_request(api: Api, prepared: requests.PreparedRequest, server: str | None = None) -> requests.PreparedRequest:
    """A copy of ``prepared`` addressed to a spec server (when sent to loopback, or when ``server`` is given)."""
    parts = urlsplit(prepared.url or "")
    query = _deep_query(parts.query) if api == "segment" else parts.query
    scheme, netloc = parts.scheme, parts.netloc
    if server is not None or (parts.hostname or "") in _LOOPBACK:
        target = urlsplit(server or servers(api)[0])
        scheme, netloc = target.scheme, target.netloc
        path = target.path.rstrip("/") + parts.path
    else:
        path = parts.path
    out = prepared.copy()
    out.url = urlunsplit((scheme, netloc, path, query, ""))
    return out


def validate_request(api: OpenAPI | Api, prepared: requests.PreparedRequest, server: str | None = None) -> None:
    """Raise if the request the client built does not match the spec."""
    name = _api_name(api)
    load_spec(name).validate_request(RequestsOpenAPIRequest(as_spec_request(name, prepared, server)))


def validate_response(
    api: OpenAPI | Api, prepared: requests.PreparedRequest, response: requests.Response, server: str | None = None
) -> None:
    """Raise if the response does not match the spec for that request (status, content type, body schema)."""
    name = _api_name(api)
    load_spec(name).validate_response(
        RequestsOpenAPIRequest(as_spec_request(name, prepared, server)), RequestsOpenAPIResponse(response)
    )


def validate_error_body(api: OpenAPI | Api, body: bytes | str | dict) -> None:
    """Validate an error body (401/403/5xx…, statuses the operations do not list) against the API's error
    envelope component schema."""
    name = _api_name(api)
    data = orjson.loads(body) if isinstance(body, (bytes, str)) else body
    root = load_spec(name).spec
    schema = root / "components" / "schemas" / ERROR_SCHEMAS[name]
    oas30_read_schema_validators_factory.create(root, schema).validate(data)
