"""The init of a real node: ``python -m conch_cluster.nodeinit <spec.json>``.

What a kind node gets from its container, this gets from namespaces: it joins the node's network
namespace (made by hostnet.py), unshares a mount, UTS and PID namespace, and as PID 1 of the latter
gives the node its own /proc, /run, /var/lib and /var/log, pins the kernel settings the kubelet would
otherwise rewrite host-wide, then starts containerd, the kubelet, kube-proxy and CoreDNS and reaps
every orphan (container shims, pods' processes).

When it exits, the kernel kills every process of the node (pods included) and drops every mount
the node made (container root filesystems, volumes, network namespace pins): nothing outlives it.
It exits on SIGTERM/SIGINT, when its launcher dies, or when one of its components does.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x04000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def log(message: str) -> None:
    print(f"[node-init] {time.strftime('%H:%M:%S')} {message}", flush=True)


def enter_namespaces(netns: str) -> None:
    fd = os.open(netns, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), "setns net")
    finally:
        os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
    # Nothing mounted from here on propagates back to the host.
    mount("none", "/", None, MS_REC | MS_PRIVATE)


def prepare_filesystem(spec: dict) -> None:
    """Runs as PID 1 of the new PID namespace, inside the private mount namespace."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for target in ("/run", "/var/lib"):
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    Path("/run/netns").mkdir()
    Path("/var/lib/kubelet").mkdir()
    mount(spec["var_log"], "/var/log", None, MS_BIND)
    for name, source in spec["sysctl_masks"].items():
        target = f"/proc/sys/{name}"
        mount(source, target, None, MS_BIND)
        mount(source, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    hostname = spec["hostname"].encode()
    _check(_libc.sethostname(hostname, len(hostname)), "sethostname")


def wait_for_cri(socket: str, timeout: float = 60.0) -> None:
    import grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(socket).exists():
            with grpc.insecure_channel(f"unix://{socket}") as channel:
                status = channel.unary_unary("/runtime.v1.RuntimeService/Status",
                                             request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
                try:
                    status(b"", timeout=2)  # an empty StatusRequest
                    log("containerd's CRI answers")
                    return
                except grpc.RpcError:
                    pass
        time.sleep(0.2)
    log(f"containerd's CRI did not answer within {timeout:.0f} s; starting the rest anyway")


class _Stop(Exception):
    """Raised by the signal handler: it interrupts the blocking waitpid (which Python would retry)."""


class Supervisor:
    def __init__(self, spec: dict):
        self.spec = spec
        self.children: dict[int, str] = {}

    def start(self) -> None:
        env = {**os.environ, "PATH": f"{self.spec['bin_dir']}:{os.environ.get('PATH', '')}"}
        for component in self.spec["components"]:
            log_path = Path(self.spec["logs"]) / f"{component['name']}.log"
            with open(log_path, "ab") as out:
                child = subprocess.Popen(component["argv"], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
            self.children[child.pid] = component["name"]
            log(f"started {component['name']} (pid {child.pid} in the node)")
            if component["name"] == "containerd" and self.spec.get("cri_socket"):
                # kubelet exits at once if the CRI answers "server is not initialized yet", which
                # containerd does for a moment after its socket appears (seen on a second start)
                wait_for_cri(self.spec["cri_socket"])

    @staticmethod
    def stop(signum: int, _frame: object) -> None:
        # Once: the launcher-side parent passes the same signal on a moment later.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        code = 0
        try:
            self.start()
            while True:
                try:
                    pid, status = os.waitpid(-1, 0)  # every orphan of the node is ours to reap
                except ChildProcessError:
                    time.sleep(0.2)
                    continue
                if pid in self.children:
                    log(f"{self.children.pop(pid)} exited with status {os.waitstatus_to_exitcode(status)}; "
                        "stopping the node")
                    code = 1
                    break
        except _Stop as e:
            log(f"{e}: stopping the node")
        self.terminate_children()
        return code

    def terminate_children(self, grace: float = 5.0) -> None:
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
            else:
                self.children.pop(pid, None)
        log("node stopped")  # leaving PID 1: the kernel kills what is left (containers included)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    enter_namespaces(spec["netns"])
    pid = os.fork()
    if pid == 0:
        try:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            prepare_filesystem(spec)
            os._exit(Supervisor(spec).run())
        except BaseException as e:  # noqa: BLE001 - PID 1 must report and exit, never unwind
            log(f"failed: {e!r}")
            os._exit(2)

    # The launcher-side parent: passes stop signals on and reports the node's exit.
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv))
