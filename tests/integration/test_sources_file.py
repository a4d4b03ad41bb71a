"""FileSource on the demo video, and LatestFrameReader in front of live and batch sources."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aios import assets
from aios.vision.sources import (
    FileSource,
    FrameSource,
    LatestFrameReader,
    SourceError,
    WebcamSource,
)
from aios.vision.types import Frame


@pytest.fixture(scope="module")
def vtest() -> Path:
    return assets.path("vtest.avi")


@pytest.mark.timeout(120)
def test_file_source_reads_all_795_frames_with_container_timestamps(vtest: Path) -> None:
    """Every frame arrives, 0.1 s apart, with wall time = start time + pts."""
    # GIVEN a batch source with a fixed start time
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    source = FileSource(vtest, source_id="cam1", start_time=start)
    # WHEN all frames are read
    frames = list(source.frames())
    # THEN there are 795 frames of 768×576, indexed 0..794, pts 0.1 s apart from 0
    assert isinstance(source, FrameSource)
    assert not source.live
    assert (source.fps, source.width, source.height, source.frame_count) == (10.0, 768, 576, 795)
    assert len(frames) == 795
    assert [f.index for f in frames] == list(range(795))
    pts = np.array([f.pts_seconds for f in frames])
    assert pts[0] == 0.0
    assert np.all(np.diff(pts) > 0)
    assert np.allclose(np.diff(pts), 0.1, atol=1e-6)
    first, last = frames[0], frames[-1]
    assert first.image.shape == (576, 768, 3) and first.image.dtype == np.uint8
    assert (first.source_id, first.live, first.motion) == ("cam1", False, None)
    assert last.wall_time == start + timedelta(seconds=last.pts_seconds)
    assert last.wall_time.tzinfo is not None


@pytest.mark.timeout(120)
def test_file_source_loop_keeps_index_and_pts_increasing(vtest: Path) -> None:
    """Looping restarts the file while index and pts keep growing."""
    # GIVEN a looping batch source
    source = FileSource(vtest, loop=True)
    # WHEN 800 frames are read (past the end of the 795-frame file)
    frames = list(itertools.islice(source.frames(), 800))
    # THEN the frames after the restart continue the numbering and the clock
    assert [f.index for f in frames] == list(range(800))
    pts = np.array([f.pts_seconds for f in frames])
    assert np.allclose(np.diff(pts), 0.1, atol=1e-6)
    assert frames[795].pts_seconds == pytest.approx(79.5)
    assert np.array_equal(frames[795].image, frames[0].image)


@pytest.mark.timeout(60)
def test_file_source_realtime_paces_at_file_fps(vtest: Path) -> None:
    """A real-time source is live and delivers ~10 frames per second."""
    # GIVEN a real-time source
    source = FileSource(vtest, realtime=True)
    assert source.live
    # WHEN 16 frames are read
    it = source.frames()
    first = next(it)
    t0 = time.monotonic()
    rest = list(itertools.islice(it, 15))
    elapsed = time.monotonic() - t0
    source.stop()
    # THEN they took ~1.5 s of wall time and are marked live with UTC capture times
    assert 1.35 <= elapsed <= 2.5
    assert all(f.live for f in [first, *rest])
    gap = (rest[-1].wall_time - first.wall_time).total_seconds()
    assert 1.35 <= gap <= 2.5


@pytest.mark.timeout(30)
def test_file_source_stop_ends_iteration(vtest: Path) -> None:
    """stop() ends an iteration in progress."""
    # GIVEN a batch read in progress
    source = FileSource(vtest)
    seen = 0
    # WHEN stop() is called after 5 frames
    for _ in source.frames():
        seen += 1
        if seen == 5:
            source.stop()
    # THEN no further frame is delivered
    assert seen == 5


def test_missing_and_undecodable_files_raise_source_error(tmp_path: Path) -> None:
    """A missing or garbage file raises SourceError naming the path."""
    # GIVEN a path that does not exist and a file that is not a video
    missing = tmp_path / "nope.mp4"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    # WHEN / THEN opening either raises SourceError with the path in the message
    with pytest.raises(SourceError, match=r"nope\.mp4"):
        FileSource(missing)
    with pytest.raises(SourceError, match=r"garbage\.mp4"):
        FileSource(garbage)


def test_missing_webcam_raises_source_error() -> None:
    """A V4L2 device that does not exist raises SourceError."""
    # GIVEN a device number no machine has
    source = WebcamSource(97)
    # WHEN / THEN reading it raises SourceError naming the device
    assert source.live
    with pytest.raises(SourceError, match="video97"):
        next(source.frames())


@pytest.mark.timeout(60)
def test_latest_frame_reader_drops_stale_frames_for_a_slow_consumer(vtest: Path) -> None:
    """A slow consumer of a live source gets fresh frames; the others are counted dropped."""
    # GIVEN a real-time (10 fps) source behind a LatestFrameReader
    reader = LatestFrameReader(FileSource(vtest, realtime=True))
    # WHEN the consumer takes 0.35 s per frame for 6 frames
    got: list[Frame] = []
    for frame in reader.frames():
        got.append(frame)
        if len(got) == 6:
            break
        time.sleep(0.35)
    reader.stop()
    # THEN frames were skipped between consecutive reads, and the skips were counted
    indexes = [f.index for f in got]
    gaps = np.diff(indexes)
    assert np.all(gaps >= 2), indexes
    assert reader.dropped_frames >= sum(int(g) - 1 for g in gaps) - 1
    assert reader.dropped_frames >= 8
    assert reader.frames_read >= indexes[-1] - indexes[0]


@pytest.mark.timeout(60)
def test_latest_frame_reader_never_drops_when_the_consumer_keeps_up(vtest: Path) -> None:
    """A consumer faster than the source sees every frame."""
    # GIVEN a real-time source behind a LatestFrameReader and a fast consumer
    reader = LatestFrameReader(FileSource(vtest, realtime=True))
    # WHEN 12 frames are read without delay
    frames = list(itertools.islice(reader.frames(), 12))
    reader.stop()
    # THEN they are consecutive and nothing was dropped
    assert [f.index for f in frames] == list(range(12))
    assert reader.dropped_frames == 0


def test_latest_frame_reader_refuses_batch_sources(vtest: Path) -> None:
    """Batch file reads are never wrapped, so they are never dropped."""
    # GIVEN a batch file source
    source = FileSource(vtest)
    # WHEN / THEN wrapping it is refused
    with pytest.raises(ValueError, match="batch"):
        LatestFrameReader(source)


class _FailingLiveSource:
    """A live source that yields two frames then fails."""

    live = True

    def frames(self) -> Iterator[Frame]:
        for i in range(2):
            yield Frame(
                image=np.zeros((4, 4, 3), np.uint8),
                index=i,
                pts_seconds=i / 10,
                wall_time=datetime.now(UTC),
                source_id="fail",
                live=True,
            )
            time.sleep(0.05)
        raise SourceError("camera unplugged")

    def stop(self) -> None:
        pass


@pytest.mark.timeout(30)
def test_latest_frame_reader_reraises_source_errors() -> None:
    """An error of the wrapped source reaches the consumer after the buffered frame."""
    # GIVEN a live source that fails after two frames, behind a reader
    reader = LatestFrameReader(_FailingLiveSource())
    got: list[int] = []
    # WHEN it is consumed
    with pytest.raises(SourceError, match="unplugged"):
        for frame in reader.frames():
            got.append(frame.index)
    # THEN the frames before the failure were delivered
    assert got[-1] == 1
