"""A PostgreSQL cluster of the test's own, which the test may stop, crash and restart."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from testbed.logs import read_from, size_of
from testbed.ports import PortInUse, free_port, retry_on_taken_port, says_port_in_use, wait_port


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL server program (initdb, pg_ctl, pg_basebackup)."""
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server package")
    return found


class PrivatePostgres:
    """A PostgreSQL cluster of its own on a free port, so that restarting it (or crashing
    it) disturbs no other test. Runs as the `postgres` user when started by root.

    Its first start takes another port if the one it was given turns out taken; after
    that the port stays, since its clients know the server by it.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._may_move = True
        self.dir = Path(tempfile.mkdtemp(prefix="transit-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            pw = pwd.getpwnam(self._user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [*args]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stdout}{done.stderr}"
                               f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self._run(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync")
        retry_on_taken_port(self._start_once, self._move if self._may_move else None)
        self._may_move = False
        return self

    def _move(self) -> None:
        self.port = free_port()

    def _start_once(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=60 -c shared_buffers=32MB")
        log_start = size_of(self.log)
        try:
            self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o",
                      options, "-w", "-t", "60", "start")
        except RuntimeError:
            if says_port_in_use(read_from(self.log, log_start)):
                raise PortInUse(f"postgres: port {self.port} is taken") from None
            raise
        wait_port(self.port, 30)

    def crash(self) -> None:
        """Stop at once, without a checkpoint, as a power cut or an OOM kill would."""
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                          "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
