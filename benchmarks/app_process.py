"""app.py as a separate process, for the benchmarks (and tests) that talk to it over HTTP."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mib(pid: int | str = "self") -> tuple[float, float]:
    """(resident, peak resident) MiB of a process (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start_app(port: int, log: Path, options: Sequence[str] = ()) -> subprocess.Popen:
    """app.py on 127.0.0.1:port with extra command-line options; returns once it answers."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), *options], env=env,
                           stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(600):
        if app.poll() is not None:
            raise SystemExit(f"app.py exited with {app.returncode}; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return app
        except OSError:
            time.sleep(0.5)
    app.terminate()
    raise SystemExit("app.py did not start within 5 minutes")


@contextmanager
def running_app(log: Path, options: Sequence[str] = ()) -> Iterator[tuple[subprocess.Popen, Any]]:
    """app.py started on a free port (start_app) and a gradio_client Client talking to it; stopped on leaving."""
    from gradio_client import Client

    port = free_port()
    app = start_app(port, log, options)
    try:
        yield app, Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app.terminate()
        app.wait()
