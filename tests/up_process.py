"""``aios up`` as a real process for the tests: free loopback ports, a data folder,
its output collected."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from up_support import free_port

START_TIMEOUT = 120.0
"""Seconds ``aios up`` may take to print "AIOS is up." (imports, first admin's hash)."""

STOP_TIMEOUT = 20.0
"""Seconds a stopped ``aios up`` may take to exit."""


class UpProcess:
    """One ``python -m aios.cli up`` on free loopback ports and a given data folder."""

    def __init__(
        self,
        data_dir: Path,
        workdir: Path,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.workdir = workdir
        self.args = args
        self.extra_env = env or {}
        self.http_port = free_port()
        self.broker_port = free_port()
        self.stdout_lines: list[str] = []
        self.stderr_path = workdir / f"stderr-{self.http_port}.log"
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> UpProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
        env |= {
            "AIOS_DATA_DIR": str(self.data_dir),
            "AIOS_PORT": str(self.http_port),
            "AIOS_BROKER_PORT": str(self.broker_port),
            "AIOS_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        env |= self.extra_env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aios.cli", "up", *self.args],
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("w"),
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while "AIOS is up." not in self.stdout_lines:
            if self.proc.poll() is not None:
                pytest.fail(f"aios up exited with {self.proc.returncode}:\n{self.stderr()}")
            assert time.monotonic() < deadline, f"aios up did not start:\n{self.stderr()}"
            time.sleep(0.05)
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def printed_password(self) -> str | None:
        """The first admin's password as ``aios up`` printed it, if it did."""
        for line in self.stdout_lines:
            found = re.fullmatch(r"\s*password: (\S+)", line)
            if found:
                return found.group(1)
        return None

    def admin_password(self) -> str:
        """The printed password; fails the test when none was printed."""
        password = self.printed_password()
        assert password is not None, "no admin password printed:\n" + "\n".join(self.stdout_lines)
        return password

    def signal(self, signum: int) -> int:
        """Send ``signum`` and return the exit status (fails after STOP_TIMEOUT)."""
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(STOP_TIMEOUT)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
