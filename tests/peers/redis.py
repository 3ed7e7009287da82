"""Redis for tests: the given server, or a redis-server we start in a temp dir."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import redis

from tests.peers import free_port, missing

__all__ = ["RedisServer"]


class RedisServer:
    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            missing("redis-server not found (apt-get install redis-server) and OMNIDESK_TEST_REDIS_URL unset")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="omnidesk-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                return url
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
