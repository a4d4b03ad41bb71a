"""How the API answers requests it refuses: 405 with Allow, unknown query parameters, one
code for validation failures, messages that say what to change, and an OpenAPI document
and Swagger UI page without stray parts."""

from __future__ import annotations

import json

from api_client import ApiClient
from api_support import Account

DEVICES = "/api/v1/devices"
PIPELINES = "/api/v1/pipelines"


def timer_pipeline() -> dict[str, object]:
    return {
        "name": "Ticks",
        "nodes": [{"id": "tick", "type": "aios/timer@1", "config": {"interval_seconds": 60}}],
    }


def test_a_known_path_with_another_method_is_405_with_allow(
    api: ApiClient, viewer: Account
) -> None:
    """PATCH on /devices is 405 naming the methods it has; an unknown path stays 404."""
    res = api.call("PATCH", DEVICES, token=viewer.token, json_body={"name": "x"})
    assert res.status == 405, res.text
    assert res.headers["allow"] == "GET, POST"
    error = res.error
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == "method_not_allowed" and "GET, POST" in error["message"]
    one = api.call("POST", f"{DEVICES}/cam-1/commands", token=viewer.token)
    assert one.status == 405 and one.headers["allow"] == "GET"
    assert api.call("PATCH", "/api/v1/nothing", token=viewer.token).status == 404


def test_unknown_query_parameters_are_refused(api: ApiClient, viewer: Account) -> None:
    """A misspelt filter is a 422 naming it and listing the accepted ones, not an
    unfiltered list."""
    res = api.get(DEVICES, token=viewer.token, query={"stauts": "offline"})
    assert res.status == 422, res.text
    assert res.error["code"] == "validation_error"
    assert res.fields() == ["query.stauts"]
    for accepted in ("status", "limit", "cursor", "min_lat"):
        assert accepted in res.error["message"]
    ok = api.get(DEVICES, token=viewer.token, query={"status": "offline", "limit": 5})
    assert ok.status == 200, ok.text
    none = api.get("/api/v1/auth/me", token=viewer.token, query={"verbose": "1"})
    assert none.status == 422 and "accepts: none" in none.error["message"]


def test_every_validation_failure_has_one_code(api: ApiClient, operator: Account) -> None:
    """Schema errors, route checks and service checks of a request all answer 422
    ``validation_error`` with field paths."""
    api.post(DEVICES, {"id": "gw-1", "name": "Gateway", "kind": "connector"}, token=operator.token)
    schema = api.post(DEVICES, {"id": "x", "name": "", "kind": "camera"}, token=operator.token)
    service = api.put(f"{DEVICES}/gw-1", {"parent_id": "gw-1"}, token=operator.token)
    route = api.get(DEVICES, token=operator.token, query={"cursor": "not-a-cursor"})
    query = api.get(DEVICES, token=operator.token, query={"limit": 0})
    for res, field in (
        (schema, "body.name"),
        (service, "body.parent_id"),
        (route, "query.cursor"),
        (query, "query.limit"),
    ):
        assert res.status == 422, res.text
        assert res.error["code"] == "validation_error", res.text
        assert field in res.fields()


def test_stale_and_unknown_expected_revisions_are_described_rightly(
    api: ApiClient, operator: Account
) -> None:
    """Behind the latest: 'saved as revision N since you loaded M'; ahead of it: 'revision
    M does not exist; the latest is N'."""
    pid = api.post(PIPELINES, timer_pipeline(), token=operator.token).json()["id"]
    url = f"{PIPELINES}/{pid}"
    ahead = api.put(
        url, {"expected_revision": 9, "document": timer_pipeline()}, token=operator.token
    )
    assert ahead.status == 409 and ahead.error["code"] == "stale_revision"
    assert "revision 9" in ahead.error["message"]
    assert "does not exist; the latest is 1" in ahead.error["message"]
    saved = api.put(
        url, {"expected_revision": 1, "document": timer_pipeline()}, token=operator.token
    )
    assert saved.status == 200 and saved.json()["latest_revision"] == 2
    behind = api.put(
        url, {"expected_revision": 1, "document": timer_pipeline()}, token=operator.token
    )
    assert behind.status == 409 and behind.error["code"] == "stale_revision"
    assert "saved as revision 2 since you loaded revision 1" in behind.error["message"]


def test_a_nan_coordinate_must_be_a_finite_number(api: ApiClient, viewer: Account) -> None:
    """``min_lat=nan`` is refused for not being a finite number (not for its range)."""
    box = {"min_lat": "nan", "min_lon": 0, "max_lat": 1, "max_lon": 1}
    res = api.get(DEVICES, token=viewer.token, query=box)
    assert res.status == 422 and res.fields() == ["query.min_lat"], res.text
    assert "finite number" in res.error["details"][0]["message"]
    assert "90" not in res.error["details"][0]["message"]


def test_openapi_has_no_unused_validation_schemas(api: ApiClient) -> None:
    """Every error is documented with the one error shape: Powertools' own
    HTTPValidationError and ValidationError schemas are gone, and nothing refers to them."""
    for res in (api.get("/openapi.json"), api.get("/docs", query={"format": "json"})):
        doc = res.json()
        schemas = doc["components"]["schemas"]
        assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
        assert "#/components/schemas/HTTPValidationError" not in json.dumps(doc)
        created = doc["paths"]["/api/v1/devices"]["post"]["responses"]["422"]
        assert created["content"]["application/json"]["schema"]["title"] == "Error"


def test_swagger_ui_does_not_call_the_online_validator(api: ApiClient) -> None:
    """The docs page sets ``validatorUrl`` to null before starting Swagger UI: nothing is
    sent to validator.swagger.io."""
    html = api.get("/docs").text
    setting = html.find("swaggerUIOptions.validatorUrl = null;")
    start = html.find("SwaggerUIBundle(swaggerUIOptions)")
    assert 0 < setting < start
