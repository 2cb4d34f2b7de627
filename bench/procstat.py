"""CPU time of a process group, from /proc (no psutil): how much CPU each server spent on a run."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """user + system CPU seconds of every live process in process group `pgid` (children that
    already exited are counted through their parent's cutime/cstime only once reaped, which the
    long-lived servers measured here never do during a run)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name (field 2) may contain spaces: split after its closing parenthesis
        fields = raw[raw.rindex(")") + 2:].split()
        # fields[0] is field 3 (state); pgrp is field 5, utime 14, stime 15
        if int(fields[2]) != pgid:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


class CpuMeter:
    """CPU seconds spent by several process groups between start() and stop()."""

    def __init__(self, groups: dict[str, int]):
        self.groups = groups
        self._start: dict[str, float] = {}

    def start(self) -> "CpuMeter":
        self._start = {name: group_cpu_seconds(pgid) for name, pgid in self.groups.items()}
        return self

    def stop(self) -> dict[str, float]:
        return {name: round(group_cpu_seconds(pgid) - self._start[name], 3) for name, pgid in self.groups.items()}


def system_busy_seconds() -> float:
    """CPU seconds the whole machine (all CPUs) spent running something since boot, from
    /proc/stat; time stolen by the hypervisor is not included (see steal_seconds)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq) / _TICK


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests while this VM wanted to run."""
    return int(Path("/proc/stat").read_text().splitlines()[0].split()[8]) / _TICK


def _own_cpu_seconds() -> float:
    """CPU of this process and of its reaped children (wrk, the venv probes)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class ForeignMeter:
    """How busy the machine was with work that is *not* this benchmark (other users' builds,
    test clusters…) over a window, in cores: system busy time minus the benchmark's own
    servers (process groups), itself and its reaped children, divided by wall time."""

    def __init__(self, groups: dict[str, int] | None = None):
        self.groups = groups or {}

    def start(self) -> "ForeignMeter":
        self._t = time.monotonic()
        self._sys = system_busy_seconds()
        self._steal = steal_seconds()
        self._own = _own_cpu_seconds()
        self._groups = {n: group_cpu_seconds(g) for n, g in self.groups.items()}
        return self

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t
        groups = {n: group_cpu_seconds(g) - self._groups[n] for n, g in self.groups.items()}
        own = _own_cpu_seconds() - self._own
        busy = system_busy_seconds() - self._sys
        steal = steal_seconds() - self._steal
        foreign = max(0.0, busy - own - sum(groups.values()))
        return {"wall_s": round(wall, 3), "busy_cores": round(busy / wall, 3),
                "foreign_cores": round(foreign / wall, 3), "steal_cores": round(steal / wall, 3),
                # what disturbs a measurement: other work here, and CPU the hypervisor gave
                # to other VMs while this one wanted to run
                "disturbance_cores": round((foreign + steal) / wall, 3),
                "cpu_seconds": {**{n: round(v, 3) for n, v in groups.items()}, "bench+wrk": round(own, 3)}}


def wait_quiet(groups: dict[str, int] | None = None, *, max_foreign_cores: float = 0.1, window: float = 2.0,
               timeout: float = 180.0, say=None) -> dict[str, float]:
    """Waits (up to `timeout`) until other work on the machine uses less than
    `max_foreign_cores` over a `window`; returns the last window's measurement."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        meter = ForeignMeter(groups).start()
        time.sleep(window)
        m = meter.stop()
        if m["disturbance_cores"] <= max_foreign_cores or time.monotonic() > deadline:
            m["quiet"] = m["disturbance_cores"] <= max_foreign_cores
            return m
        if say and not told:
            say(f"machine busy with other work ({m['foreign_cores']:.2f} cores, hypervisor steal "
                f"{m['steal_cores']:.2f}): waiting for quiet")
            told = True
