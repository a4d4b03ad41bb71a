"""Request bodies the API cannot take: free-form JSON nested too deep (refused before
anything is stored), bodies that are not UTF-8 JSON, not declared as JSON, or sent to an
endpoint that takes none. Driven through the resolver with proxy events, as Lambda is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_client import ApiClient, ApiResponse
from api_support import Account

from aios.api.models import METADATA_DEPTH, NODE_CONFIG_DEPTH
from aios.domain import MAX_JSON_DEPTH, json_depth

DEVICES = "/api/v1/devices"
PIPELINES = "/api/v1/pipelines"
LOGIN = "/api/v1/auth/login"


def nested(depth: int) -> dict[str, Any]:
    """An object nesting ``depth`` levels: ``{"a": {"a": … {"a": 1}}}``."""
    value: dict[str, Any] = {"a": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    assert json_depth(value) == depth
    return value


def assert_error_shape(res: ApiResponse) -> dict[str, Any]:
    """The API's one error shape, with the response's request id."""
    error = res.error
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert error["request_id"] == res.headers["x-request-id"]
    return error


def pipeline(config: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "name": "Depth",
        "nodes": [{"id": "tick", "type": "aios/timer@1", "config": config or {}}],
        **fields,
    }


def test_deep_desired_config_is_refused_and_the_device_stays_readable(
    api: ApiClient, operator: Account
) -> None:
    """A config deeper than MAX_JSON_DEPTH is a 422 on body.config; nothing is stored, so
    the device, the list and the analytics still read; a config at the limit is kept."""
    assert (
        api.post(
            DEVICES, {"id": "cam-1", "name": "Gate", "kind": "camera"}, token=operator.token
        ).status
        == 201
    )
    url = f"{DEVICES}/cam-1/config"
    # WHEN a config 200 levels deep is sent
    res = api.put(url, {"config": nested(200)}, token=operator.token)
    # THEN it is refused, naming the field
    assert res.status == 422, res.text
    error = assert_error_shape(res)
    assert error["code"] == "validation_error"
    assert res.fields() == ["body.config"]
    assert str(MAX_JSON_DEPTH) in error["details"][0]["message"]
    # AND nothing was written: the device, the list and the analytics answer
    device = api.get(f"{DEVICES}/cam-1", token=operator.token)
    assert device.status == 200, device.text
    assert (device.json()["desired_config"], device.json()["desired_version"]) == ({}, 0)
    assert api.get(DEVICES, token=operator.token).status == 200
    assert api.get("/api/v1/analytics/devices", token=operator.token).status == 200
    # AND one level too many is refused, the limit itself is kept and read back
    over = api.put(url, {"config": nested(MAX_JSON_DEPTH + 1)}, token=operator.token)
    assert over.status == 422 and over.fields() == ["body.config"]
    ok = api.put(url, {"config": nested(MAX_JSON_DEPTH)}, token=operator.token)
    assert ok.status == 200, ok.text
    read = api.get(f"{DEVICES}/cam-1", token=operator.token).json()
    assert read["desired_config"] == nested(MAX_JSON_DEPTH)


def test_deep_command_params_are_refused_before_anything_is_sent(
    api: ApiClient, operator: Account
) -> None:
    """Deep command params: 422 on body.params (not 503 for the missing device link), and
    no command is recorded."""
    api.post(DEVICES, {"id": "plc-1", "name": "PLC", "kind": "plc"}, token=operator.token)
    res = api.post(
        f"{DEVICES}/plc-1/command",
        {"name": "write", "params": nested(MAX_JSON_DEPTH + 1)},
        token=operator.token,
    )
    assert res.status == 422 and res.fields() == ["body.params"], res.text
    listed = api.get(f"{DEVICES}/plc-1/commands", token=operator.token).json()
    assert listed["items"] == []


def test_deep_pipeline_documents_are_refused_and_nothing_is_saved(
    api: ApiClient, operator: Account
) -> None:
    """A whole pipeline document nests at most MAX_JSON_DEPTH levels: metadata at most
    METADATA_DEPTH, a node's config at most NODE_CONFIG_DEPTH; deeper is a 422 naming the
    field, and neither a pipeline nor a revision is created."""
    assert (METADATA_DEPTH, NODE_CONFIG_DEPTH) == (MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH - 3)
    # WHEN a pipeline with 230-deep metadata is created
    res = api.post(PIPELINES, pipeline(metadata=nested(230)), token=operator.token)
    # THEN it is a 422 on body.metadata, and no pipeline exists
    assert res.status == 422, res.text
    assert assert_error_shape(res)["code"] == "validation_error"
    assert res.fields() == ["body.metadata"]
    assert api.get(PIPELINES, token=operator.token).json()["items"] == []
    deep_config = api.post(
        PIPELINES, pipeline(config=nested(NODE_CONFIG_DEPTH + 1)), token=operator.token
    )
    assert deep_config.status == 422 and deep_config.fields() == ["body.nodes.0.config"]
    assert api.get(PIPELINES, token=operator.token).json()["items"] == []
    # AND documents at the limits are saved and read back whole
    at_limit = pipeline(config=nested(NODE_CONFIG_DEPTH), metadata=nested(METADATA_DEPTH))
    created = api.post(PIPELINES, at_limit, token=operator.token)
    assert created.status == 201, created.text
    pid = created.json()["id"]
    read = api.get(f"{PIPELINES}/{pid}", token=operator.token).json()
    assert json_depth(read["document"]) == MAX_JSON_DEPTH
    assert read["document"]["metadata"] == nested(METADATA_DEPTH)
    # WHEN a new revision nests too deep
    res = api.put(
        f"{PIPELINES}/{pid}",
        {"expected_revision": 1, "document": pipeline(config=nested(100))},
        token=operator.token,
    )
    # THEN it is refused and no revision is added
    assert res.status == 422 and res.fields() == ["body.document.nodes.0.config"], res.text
    revisions = api.get(f"{PIPELINES}/{pid}/revisions", token=operator.token).json()
    assert [r["revision"] for r in revisions["items"]] == [1]
    assert api.get(f"{PIPELINES}/{pid}", token=operator.token).status == 200
    # AND validating an unsaved document holds it to the same limit
    check = api.post(f"{PIPELINES}/validate", nested(MAX_JSON_DEPTH + 1), token=operator.token)
    assert check.status == 422 and check.fields() == ["body"]


BAD_BODIES = [
    pytest.param(b"\xff\xfe{}", "application/json", 400, "invalid_json", "UTF-8", id="not-utf8"),
    pytest.param(
        b'{"username": "a", "password": "b"}',
        "multipart/form-data",
        415,
        "unsupported_media_type",
        "application/json",
        id="multipart-without-boundary",
    ),
    pytest.param(
        b"username=a&password=b",
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
        "application/json",
        id="form",
    ),
    pytest.param(b"{}", "text/plain", 415, "unsupported_media_type", "text/plain", id="text"),
    pytest.param(
        b'{"username": "a", "password": "b"}',
        None,
        415,
        "unsupported_media_type",
        "no Content-Type",
        id="no-content-type",
    ),
    pytest.param(
        b"{}",
        "application/json; charset=iso-8859-1",
        415,
        "unsupported_media_type",
        "UTF-8",
        id="other-charset",
    ),
    pytest.param(b"[" * 1000 + b"]" * 1000, "application/json", 422, "validation_error", "1000",
                 id="nested-1000"),
    pytest.param(b'{"username": "a",', "application/json", 400, "invalid_json", "line 1",
                 id="truncated"),
    pytest.param(b'{"username": NaN}', "application/json", 400, "invalid_json", "NaN", id="nan"),
    pytest.param(b'{"username": "\\ud800", "password": "x"}', "application/json", 400,
                 "invalid_json", "surrogate", id="lone-surrogate"),
    pytest.param(b'{"username": 1' + b"0" * 5000 + b"}", "application/json", 400,
                 "invalid_json", "digits", id="huge-number"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "content_type", "status", "code", "says"), BAD_BODIES)
def test_unreadable_bodies_are_client_errors(
    api: ApiClient, *, body: bytes, content_type: str | None, status: int, code: str, says: str
) -> None:
    """A body that is not UTF-8 JSON declared as application/json is a 4xx in the API's
    error shape, whatever is wrong with it — never a 500."""
    res = api.send_bytes("POST", LOGIN, body, content_type=content_type)
    assert res.status == status, res.text
    error = assert_error_shape(res)
    assert error["code"] == code
    assert says in error["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; charset=utf-8",
        "application/x-www-form-urlencoded",
    ],
)
def test_an_empty_body_is_no_body_whatever_its_media_type(
    api: ApiClient, content_type: str
) -> None:
    """Nothing sent is nothing to parse: a write that needs a body says so (422)."""
    res = api.send_bytes("POST", LOGIN, b"", content_type=content_type)
    assert res.status == 422, res.text
    assert assert_error_shape(res)["code"] == "validation_error"


def test_json_with_a_utf8_charset_is_read(api: ApiClient) -> None:
    """``application/json; charset=utf-8`` (any case) is JSON: the login is attempted."""
    body = json.dumps({"username": "nobody", "password": "wrong-password"}).encode()
    for content_type in ("application/json; charset=utf-8", "Application/JSON;Charset=UTF-8"):
        res = api.send_bytes("POST", LOGIN, body, content_type=content_type)
        assert res.status == 401 and res.error["code"] == "invalid_credentials", res.text


def test_unreadable_bodies_are_refused_after_authentication(api: ApiClient) -> None:
    """An anonymous caller gets 401 on a protected write, whatever its body."""
    res = api.send_bytes("POST", DEVICES, b"\xff", content_type="text/plain")
    assert res.status == 401


def test_endpoints_without_a_body_refuse_one(
    api: ApiClient, operator: Account, viewer: Account
) -> None:
    """A body sent where none is read is a 422, not silently ignored; ``{}`` is no body."""
    api.post(DEVICES, {"id": "cam-1", "name": "Gate", "kind": "camera"}, token=operator.token)
    res = api.call("DELETE", f"{DEVICES}/cam-1", token=operator.token, json_body={"force": True})
    assert res.status == 422 and res.fields() == ["body"], res.text
    assert "no request body" in res.error["message"]
    assert api.get(f"{DEVICES}/cam-1", token=viewer.token).status == 200
    assert api.call("DELETE", f"{DEVICES}/cam-1", token=operator.token, json_body={}).status == 204


def test_execute_takes_the_revision_in_its_body(api: ApiClient, operator: Account) -> None:
    """``POST …/execute`` reads ``{"revision": n}`` (documented); a body naming another
    revision than the query is a 422; unknown fields are 422."""
    created = api.post(PIPELINES, pipeline(config={"interval_seconds": 60}), token=operator.token)
    pid = created.json()["id"]
    url = f"{PIPELINES}/{pid}/execute"
    # WHEN revision 99 is asked for in the body THEN it is looked up (and does not exist)
    res = api.post(url, {"revision": 99}, token=operator.token)
    assert res.status == 404 and "99" in res.error["message"], res.text
    both = api.post(url, {"revision": 1}, token=operator.token, query={"revision": 2})
    assert both.status == 422 and both.fields() == ["body.revision"]
    typo = api.post(url, {"revison": 1}, token=operator.token)
    assert typo.status == 422 and typo.fields() == ["body.revison"]
    # AND the latest revision is found without a body (this resolver cannot start runs)
    assert api.post(url, token=operator.token).error["code"] == "runs_unavailable"
    doc = api.get("/openapi.json").json()
    execute = doc["paths"]["/api/v1/pipelines/{pipeline_id}/execute"]["post"]
    assert "requestBody" in execute
    assert execute["requestBody"].get("required") is not True


def test_failed_create_is_audited_with_the_id_it_named(
    api: ApiClient, operator: Account, admin: Account
) -> None:
    """A create that fails records the id its body named as the audit target."""
    body = {"id": "cam-1", "name": "Gate", "kind": "camera"}
    assert api.post(DEVICES, body, token=operator.token).status == 201
    assert api.post(DEVICES, body, token=operator.token).status == 409
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_id": "cam-1"}).json()
    outcomes = sorted((e["action"], e["outcome"]) for e in audit["items"])
    assert outcomes == [("device.create", "failure"), ("device.create", "success")]
