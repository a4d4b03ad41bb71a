"""Camera stream URLs by vendor, channel and stream; credentials encoded exactly once."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from connector.cameras import camera_url
from connector.config import CameraConfig


def cam(**fields: Any) -> CameraConfig:
    fields.setdefault("id", "cam-1")
    return CameraConfig.model_validate(fields)


@pytest.mark.parametrize(
    ("vendor", "channel", "stream", "path"),
    [
        ("hikvision", 1, "main", "/Streaming/Channels/101"),
        ("hikvision", 1, "sub", "/Streaming/Channels/102"),
        ("hikvision", 12, "main", "/Streaming/Channels/1201"),
        ("hikvision", 3, "sub", "/Streaming/Channels/302"),
        ("dahua", 1, "main", "/cam/realmonitor?channel=1&subtype=0"),
        ("dahua", 4, "sub", "/cam/realmonitor?channel=4&subtype=1"),
        ("amcrest", 1, "main", "/cam/realmonitor?channel=1&subtype=0"),
        ("amcrest", 2, "sub", "/cam/realmonitor?channel=2&subtype=1"),
        ("axis", 1, "main", "/axis-media/media.amp?camera=1"),
        ("axis", 2, "sub", "/axis-media/media.amp?camera=2&resolution=640x360"),
        ("reolink", 1, "main", "/h264Preview_01_main"),
        ("reolink", 1, "sub", "/h264Preview_01_sub"),
        ("reolink", 11, "main", "/h264Preview_11_main"),
        ("uniview", 1, "main", "/unicast/c1/s0/live"),
        ("uniview", 5, "sub", "/unicast/c5/s1/live"),
    ],
)
def test_vendor_templates(vendor: str, channel: int, stream: str, path: str) -> None:
    url = camera_url(
        cam(vendor=vendor, host="10.0.0.5", channel=channel, stream=stream, username="admin"),
        "pw",
    )
    assert url == f"rtsp://admin:pw@10.0.0.5:554{path}"


def test_generic_path_and_port() -> None:
    config = cam(vendor="generic", host="cam.local", port=8554, path="live/ch0")
    assert camera_url(config) == "rtsp://cam.local:8554/live/ch0"
    config = cam(vendor="generic", host="cam.local", path="/stream1")
    assert camera_url(config) == "rtsp://cam.local:554/stream1"


def test_no_credentials_no_userinfo() -> None:
    assert camera_url(cam(vendor="hikvision", host="10.0.0.5")) == (
        "rtsp://10.0.0.5:554/Streaming/Channels/101"
    )


def test_username_without_password() -> None:
    url = camera_url(cam(vendor="uniview", host="10.0.0.5", username="viewer"))
    assert url == "rtsp://viewer@10.0.0.5:554/unicast/c1/s0/live"


@pytest.mark.parametrize("password", ["p@ss:w/rd#1%", "50%off?&=", "ünï cødé", "a%40b"])
def test_reserved_characters_encoded_once(password: str) -> None:
    url = camera_url(
        cam(vendor="dahua", host="192.168.1.64", username="ad@min:x"),
        password,
    )
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, secret = userinfo.partition(":")
    assert "@" not in userinfo and "/" not in userinfo and "#" not in userinfo
    assert ":" not in user and ":" not in secret
    # decoding once gives back the original: encoded exactly once, not twice
    assert urllib.parse.unquote(secret) == password
    assert urllib.parse.unquote(user) == "ad@min:x"
    assert parts.hostname == "192.168.1.64" and parts.port == 554
    assert parts.query == "channel=1&subtype=0"


def test_raw_rtsp_url_gets_credentials() -> None:
    config = cam(url="rtsp://10.1.1.1:8554/live.sdp?x=1", username="op")
    url = camera_url(config, "s#cret")
    assert url == "rtsp://op:s%23cret@10.1.1.1:8554/live.sdp?x=1"
    assert camera_url(cam(url="rtsps://10.1.1.1/a")) == "rtsps://10.1.1.1/a"


def test_ipv6_host_bracketed() -> None:
    url = camera_url(cam(vendor="reolink", host="fd00::5", channel=2, stream="sub"))
    assert url == "rtsp://[fd00::5]:554/h264Preview_02_sub"


def test_file_camera_is_a_path() -> None:
    assert camera_url(cam(url="file:///var/video/demo%20one.avi")) == "/var/video/demo one.avi"
    assert camera_url(cam(url="videos/demo.mp4")) == "videos/demo.mp4"
