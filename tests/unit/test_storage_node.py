"""The storage node: get, put, increment, append, delete, TTL, namespaces and atomicity."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aios.events.state import MemoryStateStore, SqliteStateStore, StateStore
from aios.events.task import PermanentError, TaskRequest, TaskServices
from aios.nodes.storage import NODE, StorageNode


class Clock:
    """A settable wall clock for the state store's TTLs."""

    def __init__(self) -> None:
        self.now = 1_767_600_000.0

    def __call__(self) -> float:
        return self.now


def build(raw: dict[str, Any], state: StateStore) -> StorageNode:
    """Build a storage node on the given state store."""
    return NODE.implementation(NODE.parse_config(raw), TaskServices(state=state))  # type: ignore[no-any-return]


def event(source: str = "cam-1", **fields: Any) -> dict[str, Any]:
    """An event from ``source`` with extra top-level fields."""
    return {"event_id": f"e-{source}", "event_type": "zone.enter", "source_id": source, **fields}


def run(node: StorageNode, ev: dict[str, Any], node_id: str = "st") -> dict[str, Any]:
    """Run the node and return the result it wrote (``data.storage``)."""
    out = node.run(TaskRequest(node_id=node_id, event=ev, context={"pipeline": "site"}))
    result: dict[str, Any] = out["data"]["storage"]
    return result


def test_increment_counts_per_source_and_reports_previous_and_new_values() -> None:
    """The default key is the source id: each camera has its own counter."""
    # GIVEN an increment node
    node = build({"operation": "increment"}, MemoryStateStore())
    # WHEN cam-1 sends two events and cam-2 one
    first = run(node, event("cam-1"))
    second = run(node, event("cam-1"))
    other = run(node, event("cam-2"))
    # THEN each key counts on its own
    assert (first["previous"], first["value"], first["found"]) == (None, 1, False)
    assert (second["previous"], second["value"], second["found"]) == (1, 2, True)
    assert (other["key"], other["value"]) == ("cam-2", 1)
    assert second["namespace"] == "storage/site/st" and second["operation"] == "increment"


def test_increment_by_an_event_field_and_a_literal() -> None:
    """The step comes from value_field (a number) or value."""
    state = MemoryStateStore()
    by_field = build({"operation": "increment", "key": "total", "value_field": "data.kg"}, state)
    by_value = build({"operation": "increment", "key": "total", "value": 0.5}, state)
    assert run(by_field, event(data={"kg": 2}))["value"] == 2
    assert run(by_field, event(data={"kg": 3}))["value"] == 5
    # a different node id means a different (private) namespace
    assert run(by_value, event(), node_id="other")["value"] == 0.5


def test_value_field_missing_or_not_a_number_is_a_permanent_error() -> None:
    """The message names the field and what is wrong."""
    node = build({"operation": "increment", "value_field": "data.kg"}, MemoryStateStore())
    with pytest.raises(PermanentError, match=r"no field 'data\.kg'"):
        run(node, event())
    with pytest.raises(PermanentError, match=r"needs a number.*'data\.kg' is 'heavy'"):
        run(node, event(data={"kg": "heavy"}))


def test_shared_namespace_lets_one_node_write_and_another_read() -> None:
    """put in one node, get in another, by zone."""
    # GIVEN two nodes sharing a namespace, keyed by zone
    state = MemoryStateStore()
    writer = build(
        {
            "operation": "put",
            "namespace": "last-seen",
            "key": "{{ event.zone }}",
            "value_field": "class_name",
        },
        state,
    )
    reader = build(
        {
            "operation": "get",
            "namespace": "last-seen",
            "key": "{{ event.zone }}",
            "result_field": "data.last",
        },
        state,
    )
    # WHEN a person is seen at the dock, then a truck
    run(writer, event(zone="dock", class_name="person"), node_id="w")
    put = run(writer, event(zone="dock", class_name="truck"), node_id="w")
    got = reader.run(
        TaskRequest(node_id="r", event=event(zone="dock"), context={"pipeline": "other"})
    )["data"]["last"]
    # THEN the reader (another node, another pipeline) sees the latest value
    assert (put["previous"], put["value"]) == ("person", "truck")
    assert got["value"] == "truck" and got["found"] is True
    assert got["namespace"] == "storage.shared/last-seen"


def test_append_keeps_the_newest_items_up_to_max_items() -> None:
    """The list is bounded; the oldest items go first."""
    node = build(
        {"operation": "append", "value_field": "track_id", "max_items": 3}, MemoryStateStore()
    )
    results = [run(node, event(track_id=i)) for i in range(5)]
    assert results[0]["value"] == [0]
    assert results[-1]["previous"] == [1, 2, 3]
    assert results[-1]["value"] == [2, 3, 4]


def test_append_and_increment_refuse_a_value_of_the_wrong_type() -> None:
    """A stored text cannot be incremented nor appended to; it is left as it was."""
    state = MemoryStateStore()
    build({"operation": "put", "value": "text"}, state).run(
        TaskRequest(node_id="st", event=event(), context={"pipeline": "site"})
    )
    with pytest.raises(PermanentError, match="holds 'text', not a number"):
        run(build({"operation": "increment"}, state), event())
    with pytest.raises(PermanentError, match="holds 'text', not a list"):
        run(build({"operation": "append", "value": 1}, state), event())
    assert state.get("storage/site/st", "cam-1") == "text"


def test_delete_removes_the_key() -> None:
    """After delete, get finds nothing."""
    state = MemoryStateStore()
    run(build({"operation": "put", "value": {"a": 1}}, state), event())
    deleted = run(build({"operation": "delete"}, state), event())
    got = run(build({"operation": "get"}, state), event())
    assert (deleted["previous"], deleted["value"]) == ({"a": 1}, None)
    assert (got["value"], got["found"]) == (None, False)


def test_values_expire_after_ttl_from_their_last_write() -> None:
    """Each write restarts the TTL; after it, the key is gone."""
    # GIVEN a counter with a 60 s TTL on a store with a settable clock
    clock = Clock()
    state = MemoryStateStore(clock=clock)
    node = build({"operation": "increment", "ttl_seconds": 60}, state)
    run(node, event())
    # WHEN 50 s pass, it is still there; another write restarts the TTL
    clock.now += 50
    assert run(node, event())["value"] == 2
    clock.now += 50
    assert run(node, event())["value"] == 3
    # THEN 61 s after the last write it has expired
    clock.now += 61
    assert run(node, event())["previous"] is None


def test_concurrent_increments_are_not_lost(tmp_path: Path) -> None:
    """Eight threads incrementing one key on SQLite end at the exact total."""
    # GIVEN a counter on the SQLite store
    state = SqliteStateStore(tmp_path / "state.db")
    node = build({"operation": "increment", "key": "all"}, state)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                run(node, event())
        except BaseException as err:  # report in the main thread
            errors.append(err)

    # WHEN 8 threads increment 25 times each
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # THEN the total is 200 and it survives reopening the store
    assert not errors and not any(t.is_alive() for t in threads)
    state.close()
    reopened = SqliteStateStore(tmp_path / "state.db")
    assert reopened.get("storage/site/st", "all") == 200
    reopened.close()


def test_key_rendering_empty_is_a_permanent_error() -> None:
    """A key template that renders empty says which template."""
    node = build({"operation": "get", "key": "{{ event.zone }}"}, MemoryStateStore())
    with pytest.raises(PermanentError, match=r"key template '\{\{ event.zone \}\}' rendered empty"):
        run(node, event())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"operation": "put"}, "operation 'put' needs 'value' or 'value_field'"),
        ({"operation": "append"}, "operation 'append' needs 'value' or 'value_field'"),
        ({"operation": "get", "value": 3}, "operation 'get' takes no 'value'"),
        ({"operation": "increment", "value": "one"}, "needs a number in 'value', got 'one'"),
        ({"operation": "put", "value": 1, "value_field": "zone"}, "either 'value' or"),
        ({"operation": "rename"}, r"operation\n.*'get', 'put', 'increment', 'append'"),
        ({"namespace": "a/b"}, r"namespace\n.*pattern"),
        ({"ttl_seconds": 0}, r"ttl_seconds\n.*greater than 0"),
        ({"max_items": 0}, r"max_items\n.*greater than or equal to 1"),
        ({"key": "{{ event.zone "}, r"key\n.*template syntax error"),
        ({"value_field": "data..x", "operation": "put"}, r"value_field\n.*pattern"),
        ({"ttl": 5}, r"ttl\n.*Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(raw: dict[str, Any], message: str) -> None:
    """Inconsistent operations, bad names and typos fail validation."""
    with pytest.raises(ValidationError, match=message):
        NODE.parse_config(raw)
