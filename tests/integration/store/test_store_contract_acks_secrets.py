"""Contract of the event acknowledgement, the event filters the dashboard uses (severity,
acknowledged) and the integration secrets: each test runs once per adapter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aios.domain import EventRecord
from aios.store.port import EventQuery, NotFound, Store

T0 = datetime(2026, 3, 1, 8, 0, 0, 250, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(event_id: str, seconds: float, **fields: Any) -> EventRecord:
    values: dict[str, Any] = {
        "pipeline_id": "pl-1",
        "run_id": "run-1",
        "node_id": "dash",
        "source_id": "cam-1",
        "type": "zone.entered",
        "time": at(seconds),
    }
    values.update(fields)
    return EventRecord(id=event_id, **values)


def test_event_acknowledge_keeps_the_first(store: Store) -> None:
    store.events.put(event("ev-1", 0, severity="critical", data={"zone": "dock"}))
    acked = store.events.acknowledge("ev-1", by="oscar", at=at(5))
    assert (acked.acknowledged_by, acked.acknowledged_at) == ("oscar", at(5))
    assert acked.data == {"zone": "dock"} and acked.severity == "critical"
    again = store.events.acknowledge("ev-1", by="alice", at=at(9))
    assert (again.acknowledged_by, again.acknowledged_at) == ("oscar", at(5))
    assert store.events.get("ev-1") == acked
    with pytest.raises(NotFound):
        store.events.acknowledge("ghost", by="oscar", at=at(5))
    assert store.events.get("ghost") is None


def test_event_list_filters_by_severity_and_acknowledgement(store: Store) -> None:
    store.events.put(event("a", 1, severity="info"))
    store.events.put(event("b", 2, severity="critical"))
    store.events.put(event("c", 3, severity="warning", pipeline_id="pl-2", run_id="run-2"))
    store.events.put(event("d", 4, severity="critical", source_id="cam-2"))
    store.events.acknowledge("b", by="oscar", at=at(10))

    def listed(query: EventQuery) -> list[str]:
        return [e.id for e in store.events.list(query).items]

    assert listed(EventQuery(severity="critical")) == ["d", "b"]
    assert listed(EventQuery(acknowledged=True)) == ["b"]
    assert listed(EventQuery(acknowledged=False)) == ["d", "c", "a"]
    assert listed(EventQuery(severity="critical", acknowledged=False)) == ["d"]
    assert listed(EventQuery(pipeline_id="pl-2", severity="warning")) == ["c"]
    assert listed(EventQuery(source_id="cam-2", acknowledged=True)) == []
    assert listed(EventQuery(run_id="run-1", acknowledged=True, since=at(2))) == ["b"]
    # paging through a filtered list loses nothing
    first = store.events.list(EventQuery(acknowledged=False), limit=2)
    assert [e.id for e in first.items] == ["d", "c"] and first.next_cursor is not None
    rest = store.events.list(EventQuery(acknowledged=False), limit=2, cursor=first.next_cursor)
    assert [e.id for e in rest.items] == ["a"] and rest.next_cursor is None


def test_secrets_store_lists_names_never_values(store: Store) -> None:
    token = "EAAG-whatsapp-token-0123456789-wxyz"
    assert store.secrets.list() == [] and store.secrets.get("whatsapp_access_token") is None
    info = store.secrets.put("whatsapp_access_token", token, by="alice", at=at(1))
    assert (info.name, info.updated_by, info.updated_at, info.hint) == (
        "whatsapp_access_token",
        "alice",
        at(1),
        "wxyz",
    )
    short = store.secrets.put("smtp_password", "hunter2", by=None, at=at(2))
    assert short.hint is None  # a short value shows nothing of itself
    assert store.secrets.get("whatsapp_access_token") == token
    assert store.secrets.get("smtp_password") == "hunter2"
    listed = store.secrets.list()
    assert [s.name for s in listed] == ["smtp_password", "whatsapp_access_token"]
    assert all(token not in repr(s) and "hunter2" not in repr(s) for s in listed)
    assert store.secrets.info("whatsapp_access_token") == info
    # replace, then delete
    store.secrets.put("smtp_password", "a-much-longer-password-9876", by="bob", at=at(3))
    assert store.secrets.get("smtp_password") == "a-much-longer-password-9876"
    replaced = store.secrets.info("smtp_password")
    assert replaced is not None and (replaced.updated_by, replaced.hint) == ("bob", "9876")
    assert store.secrets.delete("smtp_password") is True
    assert store.secrets.delete("smtp_password") is False
    assert store.secrets.get("smtp_password") is None
    assert store.secrets.info("smtp_password") is None
    with pytest.raises(ValueError):
        store.secrets.put("empty", "", by=None, at=at(4))
    with pytest.raises(ValueError):
        store.secrets.put("huge", "x" * 9000, by=None, at=at(4))
