"""The app's Streamlit server on a free loopback port, up until its health check answers: what
the screenshot maker (``docs/screenshots.py``) and the browser test (``tests/test_browser.py``)
start their browsers against."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ServerDidNotStart(RuntimeError):
    """The server did not answer its health check in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(command: list[str], port: int, env: dict[str, str], log: Path, attempts: int) -> Iterator[str]:
    """Runs ``command``, a Streamlit server listening on 127.0.0.1:``port``, in the repository
    root with ``env`` and its output in ``log``; yields its URL once ``/_stcore/health`` answers
    (``attempts`` tries half a second apart, else :class:`ServerDidNotStart`), and stops it on exit."""
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(attempts):
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.5)
            else:
                raise ServerDidNotStart(f"streamlit did not start; see {log}")
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
