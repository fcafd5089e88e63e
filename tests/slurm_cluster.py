"""A one-node Slurm cluster for the tests, from Debian's ``slurm-wlm`` and ``munge`` packages.

Everything lives in one temporary folder: a private ``munged`` with its own key
and socket, ``slurmctld`` and ``slurmd`` on free ports, run as root with
``proctrack/linuxproc``, ``task/none`` and ``select/cons_tres`` (no cgroups, no
accounting database). ``SLURM_CONF`` points the client commands (and submitit)
at it while it runs. ``KillWait`` is 5 s, so a job that ignores SIGTERM is
killed long before a test's run would finish.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


def unavailable() -> str | None:
    """Why no cluster can start here, or ``None``."""
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        return f"no Slurm here ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the one-node Slurm cluster runs its daemons as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OneNodeCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; ``env`` is the environment its clients need."""

    def __init__(self, root: Path):
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        r = self.root
        for d in ("state", "spool"):
            (r / d).mkdir(exist_ok=True)
        lines = [
            "ClusterName=damgltest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root", "SlurmdUser=root",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}", f"SlurmdLogFile={r / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none", "ReturnToService=2", "KillWait=5", "MinJobAge=300",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]  # fmt: skip
        self.conf.write_text("\n".join(lines) + "\n")

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        subprocess.run(["munged", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
                        f"--pid-file={self.root / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
                        f"--seed-file={self.root / 'munged.seed'}"], check=True, capture_output=True)  # fmt: skip

    def start(self, timeout_s: float = 60) -> None:
        """Start munge, the controller and the node; return once the node is idle."""
        self._write_config()
        self._start_munge()
        subprocess.run(["slurmctld", "-f", str(self.conf)], env=self.env, check=True, capture_output=True)
        subprocess.run(["slurmd", "-f", str(self.conf), "-N", self.node], env=self.env, check=True, capture_output=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=self.env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Slurm node did not become idle in {timeout_s} s; see {self.root}/slurmctld.log")

    def squeue(self) -> list[str]:
        """``job_id state`` of every task in the queue or on the node."""
        done = subprocess.run(["squeue", "--noheader", "--array", "--format=%i %T"], env=self.env,
                              capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout.split("\n")[:-1]

    def stop(self) -> None:
        """Cancel every job, shut the daemons down and wait until they are gone."""
        subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, capture_output=True)
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True)
        for name in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            pid_file = self.root / name
            try:
                pid = int(pid_file.read_text())
            except (OSError, ValueError):
                continue
            if name == "munged.pid":
                _kill(pid)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            _kill(pid, 9)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.is_file() and state.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _kill(pid: int, sig: int = 15) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass
