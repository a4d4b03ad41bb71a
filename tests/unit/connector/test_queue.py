"""The connector's durable outbound queue (SQLite): order, durability, limits, rejection."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from connector.queue import OutboundQueue, QueueFull

TOPIC = "dt/aios/gw-1/telemetry"


def test_pending_is_oldest_first_and_after_skips_what_was_sent(tmp_path: Path) -> None:
    """Messages come back in the order they were queued; ``after`` starts past a seq."""
    # GIVEN a queue with five messages, one retained
    with OutboundQueue(tmp_path / "q.db") as queue:
        seqs = [queue.put(TOPIC, f"m{i}".encode()) for i in range(4)]
        seqs.append(queue.put("dt/aios/gw-1/heartbeat", b"hb", retain=True))

        # WHEN reading them, all at once and in pages
        everything = queue.pending(100)
        first_page = queue.pending(2)
        second_page = queue.pending(2, after=first_page[-1].seq)

    # THEN the seqs increase and the messages come back as queued, oldest first
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [m.seq for m in everything] == seqs
    assert [m.payload for m in everything] == [b"m0", b"m1", b"m2", b"m3", b"hb"]
    assert [m.retain for m in everything] == [False, False, False, False, True]
    assert everything[4].topic == "dt/aios/gw-1/heartbeat"
    assert [m.seq for m in first_page] == seqs[:2]
    assert [m.seq for m in second_page] == seqs[2:4]


def test_messages_survive_close_and_reopen_and_acks_stay_applied(tmp_path: Path) -> None:
    """What was queued and not acknowledged is there after a reopen; acked ones are not."""
    # GIVEN a queue with 10 messages, 4 of them acknowledged, closed
    path = tmp_path / "data" / "queue.db"
    queue = OutboundQueue(path)
    seqs = queue.put_many([(TOPIC, f"m{i}".encode()) for i in range(10)])
    for seq in seqs[:3]:
        queue.ack(seq)
    queue.ack_many([seqs[5]])
    queue.close()

    # WHEN it is opened again
    reopened = OutboundQueue(path)

    # THEN the six others are pending, in order, with their size accounted
    pending = reopened.pending(100)
    assert [m.payload for m in pending] == [b"m3", b"m4", b"m6", b"m7", b"m8", b"m9"]
    assert reopened.depth() == 6
    assert reopened.size_bytes() == 6 * (len(TOPIC) + 2)
    # AND a new message gets a larger seq
    assert reopened.put(TOPIC, b"next") > seqs[-1]
    reopened.close()


def test_seqs_are_never_reused_after_the_queue_was_emptied(tmp_path: Path) -> None:
    """An emptied queue still hands out larger seqs (the receiver's order key)."""
    # GIVEN a queue emptied by acknowledgements and reopened
    path = tmp_path / "q.db"
    with OutboundQueue(path) as queue:
        last = queue.put_many([(TOPIC, b"a"), (TOPIC, b"b")])[-1]
        queue.ack_many(m.seq for m in queue.pending(10))
        assert queue.depth() == 0 and queue.size_bytes() == 0

    # WHEN a message is queued after the reopen
    with OutboundQueue(path) as queue:
        seq = queue.put(TOPIC, b"c")

    # THEN its seq is larger than any before
    assert seq > last


def test_a_put_is_on_disk_when_it_returns_even_if_the_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL right after ``put`` returns loses nothing (WAL + synchronous=FULL)."""
    # GIVEN a process that queues 50 messages, then kills itself without closing
    path = tmp_path / "q.db"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from connector.queue import OutboundQueue\n"
        "q = OutboundQueue(Path(sys.argv[1]))\n"
        f"seqs = [q.put({TOPIC!r}, b'm%d' % i) for i in range(50)]\n"
        "print(','.join(map(str, seqs)), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )

    # WHEN it runs
    child = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, timeout=60, check=False
    )

    # THEN it died by SIGKILL, and every seq it was given is in the queue
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    accepted = [int(s) for s in child.stdout.decode().strip().split(",")]
    with OutboundQueue(path) as queue:
        pending = queue.pending(100)
    assert [m.seq for m in pending] == accepted
    assert [m.payload for m in pending] == [b"m%d" % i for i in range(50)]


def test_max_bytes_refuses_what_does_not_fit_and_acks_make_room(tmp_path: Path) -> None:
    """``QueueFull`` past ``max_bytes``; the refused message is not queued."""
    # GIVEN a queue that holds 3 messages of 100 bytes (topic + payload)
    payload = b"x" * (100 - len(TOPIC))
    queue = OutboundQueue(tmp_path / "q.db", max_bytes=300)
    seqs = [queue.put(TOPIC, payload) for _ in range(3)]
    assert queue.size_bytes() == 300

    # WHEN a fourth is put
    with pytest.raises(QueueFull, match="max_bytes=300"):
        queue.put(TOPIC, payload)

    # THEN it was not queued; a put_many that would not fit queues none of its messages
    assert queue.depth() == 3
    queue.ack(seqs[0])
    with pytest.raises(QueueFull):
        queue.put_many([(TOPIC, payload), (TOPIC, payload)])
    assert queue.depth() == 2
    # AND after an acknowledgement there is room for one again
    assert queue.put(TOPIC, payload) > seqs[-1]
    assert queue.size_bytes() == 300
    queue.close()


def test_a_rejected_message_goes_to_the_dead_letters_and_is_counted(tmp_path: Path) -> None:
    """``reject`` removes the message from the pending ones for good and counts it."""
    # GIVEN three queued messages
    path = tmp_path / "q.db"
    queue = OutboundQueue(path)
    seqs = queue.put_many([(TOPIC, b"a"), ("dt/aios/gw-2/telemetry", b"b"), (TOPIC, b"c")])

    # WHEN the broker refuses the second
    queue.reject(seqs[1], "0x87 Not authorized")
    queue.reject(seqs[1], "again")  # unknown by now: no-op

    # THEN it is no longer pending, and is kept as a dead letter with its reason
    assert [m.seq for m in queue.pending(10)] == [seqs[0], seqs[2]]
    assert queue.depth() == 2
    assert queue.size_bytes() == 2 * (len(TOPIC) + 1)
    assert queue.rejected_count() == 1
    queue.close()
    with OutboundQueue(path) as reopened:
        assert reopened.rejected_count() == 1
        [dead] = reopened.dead_letters()
        assert dead.message.seq == seqs[1]
        assert dead.message.topic == "dt/aios/gw-2/telemetry"
        assert dead.message.payload == b"b"
        assert dead.reason == "0x87 Not authorized"
        assert [m.seq for m in reopened.pending(10)] == [seqs[0], seqs[2]]


def test_concurrent_puts_from_threads_get_distinct_seqs(tmp_path: Path) -> None:
    """Four threads putting at once: every message queued once, seqs distinct."""
    # GIVEN a queue shared by four threads
    queue = OutboundQueue(tmp_path / "q.db")
    results: list[list[int]] = [[] for _ in range(4)]

    def work(n: int) -> None:
        results[n] = [queue.put(TOPIC, f"{n}-{i}".encode()) for i in range(25)]

    # WHEN each queues 25 messages
    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # THEN there are 100, each thread's in its own order
    all_seqs = [s for r in results for s in r]
    assert len(set(all_seqs)) == 100 and queue.depth() == 100
    assert all(r == sorted(r) for r in results)
    payloads = {m.seq: m.payload for m in queue.pending(200)}
    assert payloads[results[2][7]] == b"2-7"
    queue.close()


def test_bad_input_is_refused_with_what_to_change(tmp_path: Path) -> None:
    """Empty topic, str payload, max_bytes < 1, a closed queue: clear errors."""
    with pytest.raises(ValueError, match="max_bytes"):
        OutboundQueue(tmp_path / "q.db", max_bytes=0)
    queue = OutboundQueue(tmp_path / "q.db")
    with pytest.raises(ValueError, match="topic is empty"):
        queue.put("", b"x")
    with pytest.raises(ValueError, match="payload must be bytes"):
        queue.put(TOPIC, "text")  # type: ignore[arg-type]
    queue.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        queue.put(TOPIC, b"x")


def test_a_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    """A queue file from a newer connector is not misread."""
    path = tmp_path / "q.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=7")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="schema version 7"):
        OutboundQueue(path)
    assert os.path.exists(path)
