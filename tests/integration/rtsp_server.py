"""A tiny RTSP server for the integration tests: GStreamer's RTSP server through GObject.

Run it with Debian's ``/usr/bin/python3`` (``python3-gi`` lives there, not in the venv)::

    /usr/bin/python3 rtsp_server.py --port 8554 --user admin --password 'p@ss#w:rd/1'

It serves one H.264 stream at ``rtsp://127.0.0.1:<port>/<mount>`` from ``videotestsrc``
(a moving ball, 320×240 at 10 fps by default) behind RTSP basic authentication. When it is
listening it writes ``READY <port>`` on a line of standard output; errors go to standard
error and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import signal
import sys

MISSING = 3
"""Exit status when python3-gi, the RTSP server library or a GStreamer element is missing."""


def main() -> int:
    """Parse the arguments, start serving, and run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/stream")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", required=True)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()

    try:
        # Importable only with Debian's python3-gi, hence inside main().
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as err:
        sys.stderr.write(f"GStreamer RTSP server bindings are missing: {err}\n")
        return MISSING

    Gst.init(None)
    for element in ("videotestsrc", "x264enc", "rtph264pay"):
        if Gst.ElementFactory.find(element) is None:
            sys.stderr.write(f"GStreamer element {element} is missing\n")
            return MISSING

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    factory.add_role_from_structure(
        Gst.Structure.from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )[0]
    )

    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
    server.set_auth(auth)

    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        sys.stderr.write(f"cannot listen on 127.0.0.1:{args.port}\n")
        return 2

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda *_: loop.quit() or False)
    sys.stdout.write(f"READY {args.port}\n")
    sys.stdout.flush()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
