"""Exceptions raised by conch_cluster."""

from __future__ import annotations

import subprocess


class ClusterError(RuntimeError):
    """The control plane could not be built, started or queried."""


class ComponentDied(ClusterError):
    """A component process exited while it was expected to run."""

    def __init__(self, name: str, returncode: int | None, log_tail: str):
        self.name = name
        self.returncode = returncode
        self.log_tail = log_tail
        super().__init__(f"{name} exited with code {returncode}; last log lines:\n{log_tail}")


class KubectlError(subprocess.CalledProcessError):
    """kubectl failed; unlike CalledProcessError, str() includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{(self.stderr or '').strip()}"
