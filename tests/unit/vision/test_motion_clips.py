"""Motion gate, frame ring buffer, event clips, snapshots and drawing helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from aios import assets
from aios.vision.annotate import (
    HIGHLIGHT_COLOR,
    VideoWriter,
    class_color,
    draw_line,
    draw_polygon,
)
from aios.vision.clips import ClipRecorder, FrameRingBuffer, save_snapshot
from aios.vision.motion import MotionGate
from aios.vision.sources import FileSource
from aios.vision.types import Detections, Frame

FPS = 10.0


def _frame(image: np.ndarray, index: int, fps: float = FPS) -> Frame:
    return Frame(
        image=image,
        index=index,
        pts_seconds=index / fps,
        wall_time=datetime(2024, 1, 1, tzinfo=UTC),
        source_id="test",
    )


def _noise_frame(index: int, width: int = 160, height: int = 120) -> Frame:
    rng = np.random.default_rng(index)
    return _frame(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), index)


def _decoded_frames(path: Path) -> tuple[list[float], float, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(f.time or 0.0) for f in container.decode(stream)]
        rate = float(stream.average_rate or 0)
        size = (stream.codec_context.width, stream.codec_context.height)
    return times, rate, size


@pytest.fixture(scope="module")
def vtest() -> Path:
    return assets.path("vtest.avi")


@pytest.fixture(scope="module")
def static_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s H.264 file showing one unchanging textured picture."""
    path = tmp_path_factory.mktemp("static") / "static.mp4"
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    image = np.asarray(cv2.GaussianBlur(noise, (9, 9), 0), dtype=np.uint8)
    cv2.rectangle(image, (40, 40), (120, 160), (0, 200, 0), -1)
    with VideoWriter(path, FPS, 320, 240) as writer:
        for _ in range(30):
            writer.write(image)
    return path


# --- motion gate ---------------------------------------------------------------------


def test_motion_gate_sees_people_walking_in_vtest(vtest: Path) -> None:
    """People walk through the whole of vtest.avi: nearly every frame is motion."""
    # GIVEN the default gate and the demo video
    gate = MotionGate(threshold_fraction=0.002, pixel_threshold=25, downscale_width=320)
    # WHEN every frame is checked
    decisions = [gate.check(f.image) for f in FileSource(vtest).frames()]
    # THEN the first frame is motion with fraction 1 and at least 95 % of frames are motion
    assert decisions[0] == (True, 1.0)
    assert len(decisions) == 795
    assert sum(d.motion for d in decisions) >= 0.95 * len(decisions)
    assert all(0.0 <= d.changed_fraction <= 1.0 for d in decisions)


def test_motion_gate_static_video_has_no_motion_after_first_frame(static_video: Path) -> None:
    """A static scene yields motion on the first frame only."""
    # GIVEN a gate and a video of one unchanging picture
    gate = MotionGate(threshold_fraction=0.002, pixel_threshold=25, downscale_width=160)
    # WHEN its frames are marked by the gate
    frames = [gate.apply(f) for f in FileSource(static_video).frames()]
    # THEN only the first frame is motion
    assert len(frames) == 30
    assert [f.motion for f in frames] == [True] + [False] * 29


def test_motion_gate_detects_a_moving_square_and_resets_on_size_change() -> None:
    """A square appearing is motion; a new frame size restarts the background."""
    # GIVEN a gate that saw a black frame
    gate = MotionGate(threshold_fraction=0.01, pixel_threshold=25, downscale_width=100)
    black = np.zeros((100, 200, 3), np.uint8)
    assert gate(black).motion
    assert not gate(black).motion
    # WHEN a white square covering ~10 % of the image appears
    square = black.copy()
    square[20:80, 50:110] = 255
    decision = gate(square)
    # THEN it is motion, with a changed fraction close to the square's area
    assert decision.motion
    assert 0.1 < decision.changed_fraction < 0.3
    # AND a frame of another size counts as a first frame
    assert gate(np.zeros((50, 50, 3), np.uint8)) == (True, 1.0)


def test_motion_gate_rejects_bad_parameters() -> None:
    """Out-of-range parameters raise ValueError."""
    # GIVEN / WHEN / THEN each bad parameter is refused
    with pytest.raises(ValueError):
        MotionGate(threshold_fraction=0)
    with pytest.raises(ValueError):
        MotionGate(pixel_threshold=0)
    with pytest.raises(ValueError):
        MotionGate(blur_kernel=4)


# --- ring buffer -----------------------------------------------------------------------


def test_ring_buffer_keeps_only_the_last_seconds() -> None:
    """The buffer spans at most max_seconds and stores JPEGs."""
    # GIVEN a 2 s buffer
    ring = FrameRingBuffer(2.0)
    # WHEN 10 s of 10 fps frames are added
    for i in range(100):
        ring.add(_noise_frame(i))
    # THEN 21 frames (pts 7.9 .. 9.9) remain, JPEG-encoded and decodable
    items = list(ring)
    assert len(ring) == 21
    assert ring.span_seconds == pytest.approx(2.0)
    assert items[0].pts_seconds == pytest.approx(7.9)
    assert items[0].jpeg[:2] == b"\xff\xd8"
    assert items[-1].image().shape == (120, 160, 3)
    assert ring.nbytes == sum(len(i.jpeg) for i in items)


def test_ring_buffer_respects_a_byte_cap() -> None:
    """With max_bytes the total JPEG size stays under the cap."""
    # GIVEN a 60 s buffer capped at ~5 frames of noise
    one = len(FrameRingBuffer(1.0).add(_noise_frame(0)).jpeg)
    ring = FrameRingBuffer(60.0, max_bytes=5 * one)
    # WHEN 50 frames are added
    for i in range(50):
        ring.add(_noise_frame(i))
    # THEN the cap holds and the newest frames are the ones kept
    assert ring.nbytes <= 5 * one
    assert 1 <= len(ring) <= 6
    assert list(ring)[-1].index == 49


# --- clips -----------------------------------------------------------------------------


def test_clip_for_an_event_has_pre_plus_post_duration(tmp_path: Path, vtest: Path) -> None:
    """A clip spans pre+post seconds (within one frame) and decodes with PyAV."""
    # GIVEN a recorder fed with vtest.avi, an event at t = 5 s with 2 s before and 3 s after
    recorder = ClipRecorder(FrameRingBuffer(4.0))
    finished = []
    clip_path = tmp_path / "clips" / "event.mp4"
    for frame in FileSource(vtest).frames():
        finished += recorder.push(frame)
        if frame.index == 50:
            assert recorder.start_clip(clip_path, frame.pts_seconds, 2.0, 3.0) is None
        if frame.index == 120:
            break
    # WHEN the stream ends
    finished += recorder.finish_all()
    # THEN one complete clip was written with frames 30 .. 80
    assert len(finished) == 1
    info = finished[0]
    assert info.complete
    assert info.frame_count == 51
    assert info.start_pts == pytest.approx(3.0)
    assert info.end_pts == pytest.approx(8.0)
    assert abs(info.duration_seconds - 5.0) <= 1 / FPS + 1e-6
    # AND the MP4 decodes: 51 frames, 10 fps, even size, timestamps 0.1 s apart
    times, rate, size = _decoded_frames(clip_path)
    assert len(times) == 51
    assert rate == pytest.approx(FPS)
    assert size == (768, 576)
    assert np.allclose(np.diff(times), 0.1, atol=1e-3)
    assert abs((times[-1] - times[0] + 1 / FPS) - 5.0) <= 1 / FPS + 1e-6


def test_overlapping_clips_and_finish_all(tmp_path: Path) -> None:
    """Overlapping clips progress together; finish_all closes unfinished ones."""
    # GIVEN a recorder with 3 s of frames buffered and odd-sized frames
    recorder = ClipRecorder(FrameRingBuffer(3.0), fps=FPS)
    for i in range(30):
        recorder.push(_noise_frame(i, width=161, height=121))
    # WHEN two clips start at t = 2.9 s and t = 3.3 s and frames stop at t = 4.0 s
    assert recorder.start_clip(tmp_path / "a.mp4", 2.9, 1.0, 0.5) is None
    done = []
    for i in range(30, 41):
        if i == 33:
            assert recorder.start_clip(tmp_path / "b.mp4", 3.3, 1.0, 2.0) is None
            assert recorder.pending == 2
        done += recorder.push(_noise_frame(i, width=161, height=121))
    done += recorder.finish_all()
    # THEN clip a is complete (1.9 .. 3.4 s) and clip b was cut at the end of the stream
    by_name = {info.path.name: info for info in done}
    assert by_name["a.mp4"].complete and by_name["a.mp4"].frame_count == 16
    assert not by_name["b.mp4"].complete
    assert by_name["b.mp4"].start_pts == pytest.approx(2.3)
    assert by_name["b.mp4"].end_pts == pytest.approx(4.0)
    assert recorder.pending == 0
    times, _, size = _decoded_frames(tmp_path / "b.mp4")
    assert len(times) == 18
    assert size == (160, 120)


def test_clip_in_the_past_is_written_at_once(tmp_path: Path) -> None:
    """An event whose whole window is buffered is finished by start_clip itself."""
    # GIVEN 5 s of buffered frames
    recorder = ClipRecorder(FrameRingBuffer(5.0), fps=FPS)
    for i in range(50):
        recorder.push(_noise_frame(i))
    # WHEN a clip for t = 2 s (1 s before, 1 s after) is started
    info = recorder.start_clip(tmp_path / "past.mp4", 2.0, 1.0, 1.0)
    # THEN it is complete at once with 21 frames
    assert info is not None and info.complete and info.frame_count == 21
    assert len(_decoded_frames(tmp_path / "past.mp4")[0]) == 21


# --- snapshots and drawing ---------------------------------------------------------------


def test_snapshot_decodes_and_has_boxes_drawn(tmp_path: Path) -> None:
    """The snapshot JPEG shows the class-coloured and the highlighted boxes."""
    # GIVEN a grey frame with two tracked detections, the second (track 7) highlighted
    frame = _frame(np.full((240, 320, 3), 128, np.uint8), 0)
    detections = Detections(
        xyxy=np.array([[20, 60, 120, 200], [180, 60, 300, 200]], np.float32),
        confidence=np.array([0.9, 0.8], np.float32),
        class_id=np.array([0, 16], np.int32),
        class_names=tuple(f"c{i}" for i in range(80)),
        tracker_id=np.array([3, 7], np.int64),
    )
    # WHEN the snapshot is saved
    path = save_snapshot(frame, detections, tmp_path / "snap" / "event.jpg", highlight=[1])
    # THEN it decodes to the frame's size, with box borders in the expected colours
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (240, 320, 3)
    left_edge = image[120, 19:22].astype(int)
    right_edge = image[120, 179:182].astype(int)
    assert np.abs(left_edge - np.array(class_color(0))).sum(axis=1).min() < 60
    assert np.abs(right_edge - np.array(HIGHLIGHT_COLOR)).sum(axis=1).min() < 60
    # AND the inside of the boxes is untouched grey
    assert np.abs(image[150, 70].astype(int) - 128).max() < 12


def test_draw_polygon_and_line_use_normalized_coordinates() -> None:
    """Polygons and lines are placed by fractions of the image size."""
    # GIVEN a black image
    image = np.zeros((100, 200, 3), np.uint8)
    # WHEN a filled polygon on the right half and a horizontal line with an arrow are drawn
    out = draw_polygon(
        image, [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)], color=(0, 255, 0), fill_alpha=1
    )
    out = draw_line(out, (0.0, 0.5), (0.4, 0.5), color=(255, 0, 0))
    # THEN the right half is green, the left half untouched except the line and its arrow
    assert image.max() == 0
    assert tuple(out[50, 150]) == (0, 255, 0)
    assert tuple(out[10, 40]) == (0, 0, 0)
    assert out[50, 20, 0] > 200
    # AND the default arrow points to the right-hand side of start -> end ("in" of
    # aios.analytics.lines): walking left to right, that is down on the screen
    column = out[:, 40, 0]
    assert column[56:70].max() > 200
    assert column[30:45].max() == 0
