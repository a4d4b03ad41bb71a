"""Play and Stop of stored pipelines through PipelineRuns and the local launcher: real
SQLite store, real video and model, real webhook server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
from run_site import (
    CLIP_FRAMES,
    TERMINAL,
    WAIT,
    Site,
    api_get,
    cut_clip,
    post,
    statuses,
    stored_events,
    video_pipeline,
    wait_until,
    webhook_pipeline,
    webhook_url,
)

from aios.domain import Run, RunStatus
from aios.pipeline.validation import PipelineInvalid
from aios.runs import INTERRUPTED, LauncherUnavailable, RunCapacityExceeded
from aios.store.port import Conflict, NotFound


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


@pytest.mark.timeout(300)
def test_file_pipeline_runs_to_the_end_with_events_counters_and_messages(
    site: Site, short_clip: Path
) -> None:
    """A file pipeline runs through: events stored with the run id, counters, messages."""
    # GIVEN a stored pipeline over a 20-frame clip of people walking
    pid = site.add_pipeline(video_pipeline(short_clip))
    # WHEN it is executed
    run = site.runs.execute(pid, actor="alice")
    assert (run.status, run.revision, run.started_by) == (RunStatus.STARTING, 1, "alice")
    # THEN it runs to the end of the file and succeeds
    done = site.wait_status(run.id, *TERMINAL)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.error is None and done.stopped_at is not None
    # AND every zone event was stored once, with the run id and the dashboard's severity
    events = stored_events(site, run.id)
    assert events, "people walking through a whole-frame zone gave no event"
    assert len({e.id for e in events}) == len(events)
    for event in events:
        assert (event.pipeline_id, event.run_id, event.node_id) == (pid, run.id, "area")
        assert (event.type, event.source_id, event.severity) == ("zone.enter", "camera", "warning")
        assert event.data["dashboard"] == {
            "node_id": "dashboard",
            "panel": "Courtyard",
            "severity": "warning",
        }
        assert event.data["class_name"] == "person" and event.data["zone"] == "courtyard"
        # the snapshot is named by its key under the data folder and its API URL, never
        # by a path of this machine
        name = f"{event.data['event_id']}.jpg"
        assert event.data["snapshot"] == f"runs/{run.id}/media/snapshots/{name}"
        assert event.data["snapshot_url"] == f"/api/v1/runs/{run.id}/media/snapshots/{name}"
        assert (site.settings.data_dir / event.data["snapshot"]).is_file()
        assert event.data["clip"] == f"runs/{run.id}/media/clips/{event.data['event_id']}.mp4"
        assert event.data["clip_url"] == "/api/v1/" + event.data["clip"]
        assert str(site.settings.data_dir) not in json.dumps(event.data)
        # the media clock (file.input start_time) is the event's own time; the record's
        # time is when the service recorded it
        assert event.data["event_time"].startswith("2026-01-05T09:00:0")
        assert run.started_at <= event.time <= done.stopped_at
    # AND the final counters add up
    counters = done.counters
    assert counters["frames"] == {"camera": CLIP_FRAMES}
    assert counters["events"] == {"area": len(events)}
    assert counters["executions"] == {
        "succeeded": len(events),
        "failed": 0,
        "dropped": 0,
        "abandoned": 0,
    }
    assert counters["actions"] == {"dashboard": {"recorded": len(events)}}
    assert counters["events_stored"] == len(events)
    # AND each execution was written to the run's executions file
    executions = site.settings.data_dir / "runs" / run.id / "executions.jsonl"
    assert len(executions.read_text().splitlines()) == len(events)
    # AND the API serves an event's snapshot at its snapshot_url, byte for byte
    first = events[0]
    status, headers, body = api_get(site, first.data["snapshot_url"])
    assert status == 200, body[:300]
    assert headers["content-type"] == "image/jpeg"
    assert body == (site.settings.data_dir / first.data["snapshot"]).read_bytes()
    assert body[:2] == b"\xff\xd8"  # a JPEG's start-of-image marker
    # AND the pipeline's channel told the story: status, counters, events
    seen = statuses(site, pid, run.id)
    assert seen[0] == "starting" and "running" in seen and seen[-1] == "succeeded", seen
    channel = f"pipelines/{pid}"
    counted = site.feed.on(channel, "run.counters")
    assert counted and all(m["run_id"] == run.id for m in counted)
    assert max(m["counters"]["frames"].get("camera", 0) for m in counted) > 0
    published = {m["event"]["id"] for m in site.feed.on(channel, "event")}
    assert published == {e.id for e in events}
    # AND dashboard events, the alert-like ones, were also on the notifications channel
    notified = site.feed.on("notifications", "pipeline.event")
    assert {m["event"]["id"] for m in notified} == published
    assert all(m["pipeline_name"] == "Courtyard watch" for m in notified)


@pytest.mark.timeout(300)
def test_realtime_loop_is_stopped_with_clips_finished(site: Site, short_clip: Path) -> None:
    """A looping live-paced file runs until Stop; Stop finishes its clips, then 'stopped'."""
    # GIVEN a running pipeline over a looping clip, paced in real time, with 5 s clips
    pid = site.add_pipeline(
        video_pipeline(short_clip, realtime=True, loop=True, clip_post_seconds=5)
    )
    run = site.runs.execute(pid)
    site.wait_status(run.id, RunStatus.RUNNING)
    wait_until(lambda: stored_events(site, run.id), what="a first event")
    # AND counters are written while it runs
    running = wait_until(
        lambda: (r := site.run(run.id)).counters.get("frames", {}).get("camera") and r,
        what="counters while running",
    )
    assert running.status is RunStatus.RUNNING
    # WHEN it is stopped (its first clips still recording)
    asked = site.runs.stop(pid, actor="bob")
    # THEN it is stopping at once, then stopped once its workers have stopped
    assert asked.status in (RunStatus.STOPPING, RunStatus.STOPPED)
    done = site.wait_status(run.id, *TERMINAL)
    assert done.status is RunStatus.STOPPED, done.error
    assert done.stopped_at is not None and done.counters["frames"]["camera"] > 0
    seen = statuses(site, pid, run.id)
    assert seen[:2] == ["starting", "running"] and seen[-2:] == ["stopping", "stopped"], seen
    stopping = [
        m for m in site.feed.on(f"pipelines/{pid}", "run.status") if m["status"] == "stopping"
    ]
    assert stopping[0]["by"] == "bob"
    # AND every event's clip is a finished, playable MP4
    events = stored_events(site, run.id)
    assert events
    for event in events:
        clip = cv2.VideoCapture(str(site.settings.data_dir / event.data["clip"]))
        try:
            assert clip.isOpened(), event.data["clip"]
            assert int(clip.get(cv2.CAP_PROP_FRAME_COUNT)) >= 1
            ok, _ = clip.read()
            assert ok
        finally:
            clip.release()
    # AND the pipeline can be played again
    assert site.runs.active(pid) is None


@pytest.mark.timeout(60)
def test_webhook_pipeline_runs_until_stopped_and_records_executions(site: Site) -> None:
    """An event-only pipeline listens until Stop; posted events run, are stored, published."""
    # GIVEN a running webhook → 'state is open' → dashboard pipeline
    pid = site.add_pipeline(webhook_pipeline())
    run = site.runs.execute(pid)
    url = webhook_url(site, run)
    # WHEN a door opening and a door closing are posted
    opened = post(url, {"door": "north", "state": "open"})
    closed = post(url, {"door": "north", "state": "closed"})
    assert (opened.status_code, closed.status_code) == (202, 202)
    # THEN both are stored with the run id; the open one as the dashboard recorded it
    events = wait_until(
        lambda: len(found := stored_events(site, run.id)) == 2 and found, what="two events"
    )
    by_id = {e.data["event_id"]: e for e in events}
    alarm, other = by_id[opened.json()["event_id"]], by_id[closed.json()["event_id"]]
    assert (alarm.node_id, alarm.source_id, alarm.type) == (
        "door",
        "/hooks/door",
        "webhook.received",
    )
    assert alarm.severity == "critical"
    assert alarm.data["dashboard"] == {
        "node_id": "dashboard",
        "panel": "Doors",
        "severity": "critical",
    }
    assert alarm.data["data"] == {"door": "north", "state": "open"}
    assert (other.node_id, other.severity, other.data["data"]["state"]) == (
        "door",
        "info",
        "closed",
    )
    assert "dashboard" not in other.data
    # AND only the alarm went to the notifications channel
    notified = site.feed.on("notifications", "pipeline.event")
    assert [m["event"]["id"] for m in notified] == [alarm.id]
    # AND the run is still running, its counters showing both executions
    counted = wait_until(
        lambda: (c := site.run(run.id).counters).get("executions", {}).get("succeeded") == 2 and c,
        what="execution counters",
    )
    assert site.run(run.id).status is RunStatus.RUNNING
    assert counted["events"] == {"door": 2}
    assert counted["actions"] == {"dashboard": {"recorded": 1}}
    assert counted["frames"] == {}
    # WHEN it is stopped
    site.runs.stop(pid)
    done = site.wait_status(run.id, *TERMINAL)
    # THEN it is stopped, the webhook no longer answers, and the executions were written
    assert done.status is RunStatus.STOPPED, done.error
    with pytest.raises(httpx.TransportError):
        post(url, {"door": "north", "state": "open"})
    lines = (site.settings.data_dir / "runs" / run.id / "executions.jsonl").read_text()
    records = [json.loads(line) for line in lines.splitlines()]
    assert sorted(r["input"]["event"]["data"]["state"] for r in records) == ["closed", "open"]
    assert all(r["status"] == "SUCCEEDED" for r in records)


@pytest.mark.timeout(60)
def test_second_play_conflicts_and_a_revision_can_be_chosen(site: Site) -> None:
    """Play twice → Conflict; Play runs the chosen revision (default: the latest)."""
    # GIVEN a pipeline with two revisions
    pid = site.add_pipeline(webhook_pipeline())
    site.store.pipelines.add_revision(
        pid, webhook_pipeline("/hooks/door2"), expected_revision=1, at=site.services.clock()
    )
    # WHEN revision 1 is played, then played again
    run = site.runs.execute(pid, revision=1)
    assert run.revision == 1
    with pytest.raises(Conflict, match=f"already .*run '{run.id}'.*stop it"):
        site.runs.execute(pid)
    # AND while it is stopping, Play is refused with the reason (the run is marked
    # stopping by hand here: a real stop of this run takes milliseconds)
    stopping = site.store.runs.update(
        site.run(run.id).model_copy(update={"status": RunStatus.STOPPING}),
        expected_version=site.run(run.id).version,
    )
    with pytest.raises(Conflict, match=f"still stopping \\(run '{run.id}'\\).*once the run"):
        site.runs.execute(pid)
    assert stopping.status is RunStatus.STOPPING
    # THEN only the first run exists
    assert [r.id for r in site.store.runs.list(pid).items] == [run.id]
    site.runs.stop(pid)
    assert site.wait_status(run.id, *TERMINAL).status is RunStatus.STOPPED
    # AND the latest revision plays by default once the first has stopped
    again = site.runs.execute(pid)
    assert again.revision == 2
    url = webhook_url(site, again)
    assert url.endswith("/hooks/door2")


def test_invalid_revision_is_refused_and_no_run_is_created(site: Site) -> None:
    """A stored document that does not validate raises PipelineInvalid; nothing runs."""
    # GIVEN a stored pipeline whose conditional compares with a value of the wrong kind
    document = webhook_pipeline()
    document["nodes"][1]["config"]["conditions"][0] = {"field": "data.state", "operator": "gt"}
    document["edges"].append(
        {"source": "door", "sourceHandle": "events", "target": "ghost", "targetHandle": "events"}
    )
    pid = site.add_pipeline(document)
    # WHEN it is played
    with pytest.raises(PipelineInvalid) as raised:
        site.runs.execute(pid)
    # THEN every problem is named, and no run was created
    where = {(i.node_id, i.code.value) for i in raised.value.issues}
    assert ("is_open", "invalid_config") in where
    assert any(i.code.value == "dangling_edge" for i in raised.value.issues)
    assert site.store.runs.list(pid).items == []


def test_missing_things_and_no_launcher_are_explained(site: Site) -> None:
    """Unknown pipeline or revision, Stop with nothing running, no launcher: clear errors."""
    pid = site.add_pipeline(webhook_pipeline())
    with pytest.raises(NotFound, match="pipeline 'nope' does not exist"):
        site.runs.execute("nope")
    with pytest.raises(NotFound, match="has no revision 7 \\(its latest is 1\\)"):
        site.runs.execute(pid, revision=7)
    with pytest.raises(NotFound, match="has no active run"):
        site.runs.stop(pid)
    site.services.launcher = None
    with pytest.raises(LauncherUnavailable, match="no run launcher is configured"):
        site.runs.execute(pid)
    assert site.store.runs.list(pid).items == []


def test_recover_marks_runs_of_a_dead_process_failed(site: Site) -> None:
    """Runs left active by a process that died are marked failed; Play works again."""
    # GIVEN runs a previous process left running and stopping, and one that had ended
    pid = site.add_pipeline(webhook_pipeline())
    other = site.add_pipeline(webhook_pipeline("/hooks/gate"))
    left = site.store.runs.create(Run(pipeline_id=pid, revision=1, status=RunStatus.RUNNING))
    stopping = site.store.runs.create(Run(pipeline_id=other, revision=1, status=RunStatus.STOPPING))
    ended = site.store.runs.create(Run(pipeline_id=other, revision=1, status=RunStatus.SUCCEEDED))
    with pytest.raises(Conflict):
        site.runs.execute(pid)
    # WHEN the new process recovers
    marked = site.runs.recover()
    # THEN the active ones are failed with the reason, the ended one untouched
    assert sorted(r.id for r in marked) == sorted([left.id, stopping.id])
    for run_id in (left.id, stopping.id):
        run = site.run(run_id)
        assert (run.status, run.error) == (RunStatus.FAILED, INTERRUPTED)
        assert run.stopped_at is not None
    assert site.run(ended.id).status is RunStatus.SUCCEEDED
    assert statuses(site, pid, left.id) == ["failed"]
    # AND the pipeline plays again
    run = site.runs.execute(pid)
    assert site.wait_status(run.id, RunStatus.RUNNING).status is RunStatus.RUNNING


def test_a_node_that_cannot_start_fails_the_run_with_its_reason(site: Site) -> None:
    """A webhook whose secret is not set fails the run, the message saying what to set."""
    pid = site.add_pipeline(webhook_pipeline(secret_name="unset_secret"))
    run = site.runs.execute(pid)
    done = site.wait_status(run.id, *TERMINAL)
    assert done.status is RunStatus.FAILED
    assert done.error is not None and "set secret 'unset_secret'" in done.error
    assert statuses(site, pid, run.id)[-1] == "failed"
    assert site.runs.active(pid) is None


def test_runs_over_the_limit_are_refused_and_recorded_failed(tmp_path: Path) -> None:
    """With room for one run, a second Play raises RunCapacityExceeded, recorded failed."""
    site = Site(tmp_path, max_concurrent=1)
    try:
        first = site.add_pipeline(webhook_pipeline())
        second = site.add_pipeline(webhook_pipeline("/hooks/gate"))
        site.runs.execute(first)
        with pytest.raises(RunCapacityExceeded, match="AIOS_MAX_CONCURRENT_STREAMS=1"):
            site.runs.execute(second)
        [refused] = site.store.runs.list(second).items
        assert refused.status is RunStatus.FAILED
        assert refused.error is not None and "stop one or raise the limit" in refused.error
        assert statuses(site, second, refused.id) == ["starting", "failed"]
    finally:
        site.close()


def test_shutdown_stops_every_run(site: Site) -> None:
    """Graceful shutdown stops each run, marking it stopping then stopped."""
    pids = [site.add_pipeline(webhook_pipeline(f"/hooks/door{i}")) for i in range(2)]
    runs = [site.runs.execute(pid) for pid in pids]
    for run in runs:
        site.wait_status(run.id, RunStatus.RUNNING)
    # WHEN the launcher shuts down
    site.launcher.shutdown(timeout=WAIT)
    # THEN both runs are stopped, and new ones are refused
    for pid, run in zip(pids, runs, strict=True):
        assert site.run(run.id).status is RunStatus.STOPPED
        assert statuses(site, pid, run.id)[-2:] == ["stopping", "stopped"]
    assert site.launcher.active_run_ids() == []
    with pytest.raises(LauncherUnavailable, match="shutting down"):
        site.runs.execute(pids[0])


def test_stop_of_a_run_this_process_does_not_run_marks_it_stopped(site: Site) -> None:
    """An active run nothing is running (e.g. its process died) is stopped at once."""
    pid = site.add_pipeline(webhook_pipeline())
    orphan = site.store.runs.create(Run(pipeline_id=pid, revision=1, status=RunStatus.RUNNING))
    site.runs.stop(pid)
    run = site.run(orphan.id)
    assert run.status is RunStatus.STOPPED and run.stopped_at is not None
    assert statuses(site, pid, orphan.id) == ["stopping", "stopped"]
