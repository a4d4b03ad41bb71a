"""Playing the same input again, event times of replayed recordings, a prompt Stop with
actions that keep retrying, and Play while a run is stopping: real SQLite store, real
video and model, real webhook server, HTTP receiver and Modbus PLC on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from run_site import (
    TERMINAL,
    Site,
    cut_clip,
    post,
    stored_events,
    video_pipeline,
    wait_until,
    webhook_action_pipeline,
    webhook_url,
)

from aios.domain import RunStatus
from aios.plc.simulator import ModbusSimulator, start_simulator
from aios.runs.local import STOP_GRACE_SECONDS, stored_event_id
from aios.store.port import Conflict, EventQuery

STOP_MARGIN_SECONDS = 3.0
"""Allowed beyond the grace period for Stop to be recorded (thread hand-offs, SQLite)."""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A fresh service side in a temporary folder; its runs are stopped afterwards."""
    opened = Site(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 2 s of vtest.avi (20 frames of people walking)."""
    return cut_clip(tmp_path_factory.mktemp("video") / "courtyard.avi")


class Unavailable:
    """An HTTP receiver on loopback that answers every POST 503 (no Retry-After)."""

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.requests += 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return self.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Unavailable]:
    opened = Unavailable()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def plc() -> Iterator[ModbusSimulator]:
    with start_simulator(coils=16, holding_registers=16) as sim:
        yield sim


def execution_lines(site: Site, run_id: str) -> list[dict[str, Any]]:
    path = site.settings.data_dir / "runs" / run_id / "executions.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(300)
def test_a_file_played_twice_stores_both_runs_events_at_the_time_they_were_recorded(
    site: Site, short_clip: Path
) -> None:
    """Same clip, two runs: each stores and publishes all its events; event time is kept
    in data while the record's time is today's, so the last 24 hours count them."""
    # GIVEN a pipeline over a clip whose file.input has a fixed start_time (2026-01-05)
    pid = site.add_pipeline(video_pipeline(short_clip))
    channel = f"pipelines/{pid}"
    # WHEN it is played to the end twice
    runs = []
    for _ in range(2):
        run = site.runs.execute(pid)
        done = site.wait_status(run.id, *TERMINAL)
        assert done.status is RunStatus.SUCCEEDED, done.error
        runs.append(done)
    first, second = (stored_events(site, r.id) for r in runs)
    # THEN each run stored every event it counted, under ids of its own
    assert first, "people walking through a whole-frame zone gave no event"
    for run, events in zip(runs, (first, second), strict=True):
        assert run.counters["events_stored"] == len(events) == run.counters["events"]["area"]
        assert {e.id for e in events} == {
            stored_event_id(run.id, e.data["event_id"]) for e in events
        }
    assert not {e.id for e in first} & {e.id for e in second}
    # AND the same input gave the same stream events (keys) both times
    assert {e.data["event_id"] for e in first} == {e.data["event_id"] for e in second}
    # AND the second run's events were published live too, each once
    for run, events in zip(runs, (first, second), strict=True):
        published = [
            m["event"]["id"] for m in site.feed.on(channel, "event") if m["run_id"] == run.id
        ]
        assert sorted(published) == sorted(e.id for e in events)
    # AND each keeps the recording's clock as its own time, recorded at today's time
    for run, events in zip(runs, (first, second), strict=True):
        for event in events:
            assert event.data["event_time"].startswith("2026-01-05T09:00:0")
            assert isinstance(event.data["media_time_seconds"], float)
            assert run.stopped_at is not None
            assert run.started_at <= event.time <= run.stopped_at
    # AND the default analytics window (the last 24 hours by event time) counts them all
    now = site.services.clock()
    window = EventQuery(pipeline_id=pid, since=now - timedelta(hours=24), until=now)
    counted = site.store.events.list(window, limit=1000).items
    assert len(counted) == len(first) + len(second)


@pytest.mark.timeout(60)
def test_a_duplicate_delivery_within_a_run_is_stored_and_published_once(site: Site) -> None:
    """The same event delivered twice to one run is one record and one live message."""
    pid = site.add_pipeline(
        webhook_action_pipeline(
            {
                "id": "act",
                "type": "aios/dashboard@1",
                "config": {"panel": "Doors", "severity": "critical"},
            }
        )
    )
    run = site.runs.execute(pid)
    url = webhook_url(site, run)
    sent = post(url, {"door": "north", "state": "open"})
    assert sent.status_code == 202
    [event] = wait_until(lambda: stored_events(site, run.id), what="the event")
    handle = site.launcher.handle(run.id)
    assert handle is not None
    # WHEN the same event is delivered again
    again = {
        "event_id": event.data["event_id"],
        "event_type": event.type,
        "time": event.data["event_time"],
        "source_id": event.source_id,
        "data": event.data["data"],
    }
    assert handle.store_event(again) is False
    # THEN one record and one message
    assert [e.id for e in stored_events(site, run.id)] == [event.id]
    published = site.feed.on(f"pipelines/{pid}", "event")
    assert [m["event"]["id"] for m in published] == [event.id]


@pytest.mark.timeout(120)
def test_stop_is_prompt_while_an_action_keeps_retrying(site: Site, receiver: Unavailable) -> None:
    """Stop with an HTTP POST retrying a 503 for minutes: stopped within the grace
    period; the execution is counted abandoned and sends nothing more."""
    # GIVEN a webhook → http_post pipeline whose receiver always answers 503, with a retry
    # schedule of 2, 4, 8 … s (10 retries: about 34 minutes)
    action = {
        "id": "act",
        "type": "aios/http_post@1",
        "config": {
            "url": receiver.url,
            "cooldown_seconds": 0,
            "timeout_seconds": 2,
            "retry": {"max_attempts": 10, "interval_seconds": 2, "backoff_rate": 2.0},
        },
    }
    pid = site.add_pipeline(webhook_action_pipeline(action))
    run = site.runs.execute(pid)
    url = webhook_url(site, run)
    assert post(url, {"door": "north", "state": "open"}).status_code == 202
    wait_until(lambda: receiver.count() >= 1, timeout=30, what="a first POST")
    # WHEN the pipeline is stopped
    asked = time.monotonic()
    assert site.runs.stop(pid).status is RunStatus.STOPPING
    done = site.wait_status(run.id, *TERMINAL, timeout=STOP_GRACE_SECONDS + 30)
    took = time.monotonic() - asked
    # THEN it is stopped within the grace period (plus a margin), not after the retries
    assert done.status is RunStatus.STOPPED, done.error
    assert STOP_GRACE_SECONDS - 0.5 <= took <= STOP_GRACE_SECONDS + STOP_MARGIN_SECONDS, took
    # AND the run record says one execution was abandoned
    assert done.counters["executions"] == {
        "succeeded": 0,
        "failed": 0,
        "dropped": 0,
        "abandoned": 1,
    }
    # AND Play works again at once
    assert site.runs.active(pid) is None
    # AND the abandoned execution ends at its next retry, refused, without sending again
    sent_at_stop = receiver.count()
    [record] = wait_until(
        lambda: execution_lines(site, run.id), timeout=30, what="the abandoned execution"
    )
    result = record["output"]["results"]["act"]
    assert (result["status"], result["error"]) == ("failed", "Aios.Cancelled"), result
    assert receiver.count() == sent_at_stop
    wait_until(lambda: not site.launcher.draining_run_ids(), timeout=10, what="draining")


@pytest.mark.timeout(120)
def test_an_abandoned_pulse_still_restores_the_plc_output(site: Site, plc: ModbusSimulator) -> None:
    """Stop during a PLC pulse: the run stops within the grace period, and the siren
    coil is still switched off when the pulse ends."""
    # GIVEN a webhook → PLC pulse (coil 00003 on for 8 s) pipeline
    action = {
        "id": "act",
        "type": "aios/plc_write@1",
        "config": {
            "connection": {
                "transport": "tcp",
                "host": plc.host,
                "port": plc.port,
                "unit_id": plc.device_id,
            },
            "writes": [{"name": "siren", "address": "00003", "value": True}],
            "pulse_seconds": 8,
            "cooldown_seconds": 0,
        },
    }
    pid = site.add_pipeline(webhook_action_pipeline(action))
    run = site.runs.execute(pid)
    url = webhook_url(site, run)
    assert post(url, {"door": "north", "state": "open"}).status_code == 202
    wait_until(lambda: plc.read_coils(2) == [True], timeout=30, what="the siren on")
    # WHEN the pipeline is stopped during the pulse
    asked = time.monotonic()
    site.runs.stop(pid)
    done = site.wait_status(run.id, *TERMINAL, timeout=STOP_GRACE_SECONDS + 30)
    # THEN it is stopped within the grace period, the pulse counted abandoned
    assert done.status is RunStatus.STOPPED, done.error
    assert time.monotonic() - asked <= STOP_GRACE_SECONDS + STOP_MARGIN_SECONDS
    assert done.counters["executions"]["abandoned"] == 1
    # AND the siren is switched off when the pulse ends, the restore recorded as sent
    [record] = wait_until(
        lambda: execution_lines(site, run.id), timeout=30, what="the pulse's execution"
    )
    assert plc.read_coils(2) == [False]
    results = record["output"]["results"]
    assert results["act"]["status"] == "sent" and results["act_restore"]["status"] == "sent"


@pytest.mark.timeout(120)
def test_play_while_the_previous_run_is_stopping_is_refused_with_the_reason(
    site: Site, receiver: Unavailable
) -> None:
    """During the grace period of a Stop, Play answers Conflict 'still stopping'; once
    the run is stopped, Play starts a new run."""
    action = {
        "id": "act",
        "type": "aios/http_post@1",
        "config": {
            "url": receiver.url,
            "cooldown_seconds": 0,
            "retry": {"max_attempts": 10, "interval_seconds": 2},
        },
    }
    pid = site.add_pipeline(webhook_action_pipeline(action))
    run = site.runs.execute(pid)
    url = webhook_url(site, run)
    assert post(url, {"door": "north", "state": "open"}).status_code == 202
    wait_until(lambda: receiver.count() >= 1, timeout=30, what="a first POST")
    site.runs.stop(pid)
    # WHEN it is played again while stopping
    with pytest.raises(Conflict, match=f"still stopping \\(run '{run.id}'\\)"):
        site.runs.execute(pid)
    # THEN no second run was created; after the stop, Play works
    assert [r.id for r in site.store.runs.list(pid).items] == [run.id]
    assert site.wait_status(run.id, *TERMINAL).status is RunStatus.STOPPED
    again = site.runs.execute(pid)
    assert site.wait_status(again.id, RunStatus.RUNNING).status is RunStatus.RUNNING
