"""Component processes: spawn with a log file, poll readiness, stop by process group."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ClusterError, ComponentDied

# Ports other parts of Conch bind to; never hand them out even if the kernel would.
RESERVED_PORTS = frozenset({8000, 8080, 8100, 8101, 8102})

_PR_SET_PDEATHSIG = 1

# Every component gets this variable (value: the plane's state dir) so `down` can find
# its processes even when the state file is lost or corrupt.
OWNER_ENV = "CONCH_CLUSTER_OWNER"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (kernel-chosen, outside RESERVED_PORTS)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError as e:
        return f"<no log: {e}>"


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), None if it is gone.

    Stored in the state file so ``down`` never signals a recycled pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces/parens; fields after the last ')' are fixed.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the launcher (e.g. a pytest process)
    # is killed hard, the kernel kills the component instead of leaking it. SIGKILL, not
    # SIGTERM: a graceful apiserver shutdown with etcd dying alongside takes ~25 s.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Component:
    name: str
    popen: subprocess.Popen | None
    pid: int
    start_time: int | None
    log: Path

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> Component:
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                # Own session = own process group: stop() can kill the whole group, and a
                # Ctrl-C in the launching terminal does not hit the components.
                start_new_session=True,
                # Only prctl() runs between fork and exec; no locks are taken.
                preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509
            )
        return cls(name, popen, popen.pid, proc_start_time(popen.pid), log)

    @classmethod
    def adopt(cls, name: str, pid: int, start_time: int | None, log: Path) -> Component:
        """Handle for a process started by another launcher (from a state file)."""
        return cls(name, None, pid, start_time, log)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        now = proc_start_time(self.pid)
        return now is not None and now == self.start_time and not _is_zombie(self.pid)

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def check(self) -> None:
        if not self.alive():
            raise ComponentDied(self.name, self.returncode(), tail(self.log))

    def signal(self, sig: int) -> None:
        if not self.alive():
            return
        try:
            # pgid == pid because of start_new_session.
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def find_owned(owner: str) -> list[int]:
    """Pids of live processes whose environment carries ``OWNER_ENV=owner``."""
    marker = f"{OWNER_ENV}={owner}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's process
            continue
        if marker in environ.split(b"\0") and not _is_zombie(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def kill_owned(owner: str, timeout: float = 10.0) -> list[int]:
    """Last-resort sweep: SIGTERM, then SIGKILL, every process tagged with ``owner``."""
    pids = find_owned(owner)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline and find_owned(owner):
            time.sleep(0.1)
        pids = find_owned(owner)
        if not pids:
            break
    return pids


def stop_all(components: list[Component], timeout: float = 10.0) -> None:
    """SIGTERM every component together, SIGKILL whatever is left after ``timeout``."""
    live = [c for c in components if c.alive()]  # never signal a recycled pid
    for c in live:
        c.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for c in live:
        if not c.wait(max(0.0, deadline - time.monotonic())):
            c.signal(signal.SIGKILL)
            c.wait(5.0)
    # The group may contain children that outlived the leader; make sure they go too.
    for c in live:
        try:
            os.killpg(c.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_until(
    what: str,
    probe: Callable[[], bool],
    timeout: float,
    watch: list[Component] = (),
    interval: float = 0.1,
) -> None:
    """Poll ``probe`` until it returns True; fail fast if a watched component dies."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        for c in watch:
            c.check()
        try:
            if probe():
                return
        # Probes talk to half-started servers; any failure means "not yet".
        except Exception as e:  # noqa: BLE001
            last_error = e
        if time.monotonic() > deadline:
            hint = f" (last error: {last_error})" if last_error else ""
            logs = "".join(f"\n--- {c.name} ({c.log}):\n{tail(c.log, 15)}" for c in watch)
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{hint}{logs}")
        time.sleep(interval)
