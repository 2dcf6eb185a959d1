"""Every process a launch started ends with it, however it detached.

A user script's daemon (fork, setsid, fork again) leaves the launch's process tree at once; the
tree, sampled twice a second, never saw it, and it outlived the session. Three nets now, each
catching what the one before can miss, all consulted whenever a launch is stopped:

1. The tree: the launcher's descendants, sampled while the launch runs (torch starts each rank in
   a session of its own; a process-group kill would miss them). accel-run is a child subreaper
   (prctl PR_SET_CHILD_SUBREAPER), so a process whose parent exits is re-parented to accel-run,
   not to init: a double-forked daemon stays in accel-run's own tree and is found there.
2. The marker: compile puts ACCEL_RUN_LAUNCH=<launch folder> (vocab.LAUNCH_MARK_VAR) into the
   launch's environment (LaunchPlan.env; every launcher passes it on) and every process inherits
   it, whatever it does to its session or process group. At each stop, /proc/*/environ is read
   for it. /proc shows the environment a process was exec'd with: under the fork server
   (launch.launcher: fork) the ranks, and what they fork without exec, show the server's own; the
   marker finds there only what was started by exec (a program a script runs), the tree the rest.
3. A cgroup of its own (cgroup v2), where accel-run may create one (root, or a delegated
   systemd scope): the launcher is moved into it as it starts, every descendant is born in it, and
   cgroup.kill ends them all at once, whatever their environment or parent.

Stopping: SIGTERM to everything found, a grace period, then SIGKILL, by the cgroup where there
is one; without, everything found is first SIGSTOPped (a stopped process cannot fork) and looked
for again until nothing new appears, then killed. The count of processes stopped goes into the
launch's notes.

What is guaranteed without a cgroup (a CPU machine without cgroup rights): every process started
by the launch that is alive when it is stopped is ended if it is still a descendant of accel-run
(any process that detached by losing its parent is, through the subreaper, unless something in
between made itself a subreaper too), or if the environment it was exec'd with holds the marker
and it runs as a user whose /proc/PID/environ accel-run can read (its own; any, as root). A
process escapes only by both leaving accel-run's tree (through another subreaper) and being
exec'd without the marker (a cleared environment; under the fork server, a process never exec'd),
or by changing to another user. With a cgroup, none escapes short of moving itself to another
cgroup. A launch that its work is done but that something holds open (see AfterWork) is stopped.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

import psutil

from runner.vocab import LAUNCH_MARK_VAR

CGROUP_PREFIX = "accel-run."  # accel-run.<session PID>.<launcher PID>
LINGER_S = 5.0  # a launch still running this long after every rank finished is held open by something
KILL_ROUNDS = 20  # stop-and-look rounds without a cgroup: each catches what the one before saw being born
REAP_WAIT_S = 5.0
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (Linux); False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def marked(entry: bytes) -> list[int]:
    """PIDs whose start-up environment holds `entry` (b'NAME=value'), as far as this user may read them."""
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        if data.startswith(entry + b"\0") or b"\0" + entry + b"\0" in data:
            found.append(int(name))
    return found


class LaunchCgroup:
    """A cgroup v2 of one launch under this process's own cgroup; None from create() where none can be made."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def create(name: str) -> LaunchCgroup | None:
        """A new child of this process's cgroup, if cgroup v2 is mounted and writable here."""
        parent = _own_cgroup()
        if parent is None:
            return None
        _sweep(parent)
        path = parent / name
        try:
            path.mkdir()
        except OSError:
            return None
        if not (path / "cgroup.procs").exists():
            _rmdir(path)
            return None
        return LaunchCgroup(path)

    def adopt(self, pid: int) -> bool:
        """Move `pid` into the cgroup (its children from now on are born in it)."""
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except OSError:
            return False
        return True

    def pids(self) -> list[int]:
        """The processes in it now."""
        try:
            return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> bool:
        """SIGKILL every process in it at once (cgroup.kill, Linux 5.14+); False where that file is missing."""
        try:
            (self.path / "cgroup.kill").write_text("1\n")
        except OSError:
            return False
        return True

    def remove(self) -> bool:
        """Remove the cgroup once it is empty; False while processes remain."""
        return _rmdir(self.path)


def _sweep(parent: Path) -> None:
    """Remove the empty cgroups of accel-run sessions that are gone (killed with SIGKILL: none removed its own)."""
    try:
        names = [entry.name for entry in os.scandir(parent) if entry.name.startswith(CGROUP_PREFIX)]
    except OSError:
        return
    for name in names:
        owner = name.removeprefix(CGROUP_PREFIX).partition(".")[0]
        if owner.isdigit() and not psutil.pid_exists(int(owner)):
            _rmdir(parent / name)  # fails while a process is still in it: that one is left alone


def _own_cgroup() -> Path | None:
    """The directory of this process's cgroup v2, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if own is None:
        return None
    for mount in mounts:
        fields = mount.split()
        if " - cgroup2 " in mount and len(fields) > 4:
            path = Path(fields[4]) / own.lstrip("/")
            if path.is_dir() and os.access(path, os.W_OK):
                return path
    return None


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except OSError:
        return False
    return True


class LaunchProcesses:
    """Every process one launch has started, found by the three nets, stopped together.

    refresh() samples the tree (the watch loop calls it twice a second); stop(grace_s) ends
    everything and returns how many processes were alive to be stopped.
    """

    def __init__(self, root_pid: int, *, marker: str = "", cgroup_name: str = "") -> None:
        become_subreaper()  # before any process of the launch can lose its parent: it starts in seconds
        self.root = psutil.Process(root_pid)
        self.known: dict[int, psutil.Process] = {root_pid: self.root}
        self.entry = f"{LAUNCH_MARK_VAR}={marker}".encode(errors="surrogateescape") if marker else b""
        self.me = psutil.Process()
        # this process's own children before the launch (a warm launcher, say): never the launch's orphans
        self.before = {child.pid for child in _children(self.me)} - {root_pid}
        self.spared = {os.getpid(), *(parent.pid for parent in _parents(self.me))}
        self.cgroup = LaunchCgroup.create(cgroup_name or f"{CGROUP_PREFIX}{os.getpid()}.{root_pid}")
        if self.cgroup is not None and not self.cgroup.adopt(root_pid):
            self.cgroup.remove()
            self.cgroup = None

    def refresh(self) -> None:
        """Remember every process of the launch's tree and the orphans re-parented to this process."""
        for proc in [*_children(self.root, recursive=True), *self._orphans()]:
            self._know(proc)

    def _orphans(self) -> list[psutil.Process]:
        found = []
        for child in _children(self.me):
            if child.pid not in self.before and child.pid != self.root.pid:
                found += [child, *_children(child, recursive=True)]
        return found

    def _know(self, proc: psutil.Process) -> None:
        if proc.pid not in self.spared:
            self.known.setdefault(proc.pid, proc)

    def discover(self) -> None:
        """The tree, and the processes carrying the launch's marker or in its cgroup."""
        self.refresh()
        pids = marked(self.entry) if self.entry else []
        if self.cgroup is not None:
            pids += self.cgroup.pids()
        for pid in pids:
            if pid not in self.known and pid not in self.spared:
                try:
                    self._know(psutil.Process(pid))
                except psutil.Error:
                    continue

    def alive(self) -> list[psutil.Process]:
        """The known processes still running (a zombie has ended)."""
        return [proc for proc in self.known.values() if _running(proc)]

    def stop(self, grace_s: float) -> int:
        """SIGTERM everything, wait up to `grace_s`, then SIGKILL what is left. Returns how many were alive."""
        self.discover()
        alive = self.alive()
        stopped = {proc.pid for proc in alive}
        if alive:
            _signal(alive, signal.SIGTERM)
            if grace_s > 0:
                self._wait(alive, grace_s)
            stopped |= self._kill()
        self._reap()
        if self.cgroup is not None:
            deadline = time.monotonic() + REAP_WAIT_S  # the last process leaves it a moment after it ended
            while not self.cgroup.remove() and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.05)
            if not self.cgroup.path.exists():
                self.cgroup = None
        return len(stopped)

    def stop_detached(self, grace_s: float) -> int:
        """Stop the processes that left the launcher's tree (daemons, orphans), not the launcher's own; how many."""
        self.discover()
        attached = {self.root.pid, *(proc.pid for proc in _children(self.root, recursive=True))}
        detached = [proc for proc in self.alive() if proc.pid not in attached]
        if detached:
            _signal(detached, signal.SIGTERM)
            self._wait(detached, grace_s)
            _signal([proc for proc in detached if _running(proc)], signal.SIGKILL)
            self._wait(detached, REAP_WAIT_S)
        self._reap()
        return len(detached)

    def _kill(self) -> set[int]:
        """SIGKILL everything of the launch still alive, the ones born meanwhile included; their PIDs."""
        seen: set[int] = set()
        if self.cgroup is not None and self.cgroup.kill():
            self.discover()  # what left the tree before the cgroup took it, and was not in it
            seen |= {proc.pid for proc in self.alive()}
            _signal(self.alive(), signal.SIGKILL)
        else:
            for _ in range(KILL_ROUNDS):  # freeze first: a stopped process cannot fork
                self.discover()
                fresh = [proc for proc in self.alive() if proc.pid not in seen]
                if not fresh:
                    break
                _signal(fresh, signal.SIGSTOP)
                seen |= {proc.pid for proc in fresh}
            _signal(self.alive(), signal.SIGKILL)
        self._wait(self.alive(), REAP_WAIT_S)
        if self.cgroup is not None:
            deadline = time.monotonic() + REAP_WAIT_S
            while self.cgroup.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        return seen

    def _wait(self, procs: list[psutil.Process], timeout_s: float) -> None:
        """Until every one has ended (a zombie has) or `timeout_s` passed; orphans are reaped on the way."""
        deadline = time.monotonic() + timeout_s
        pending = list(procs)
        while pending and time.monotonic() < deadline:
            self._reap()
            pending = [proc for proc in pending if _running(proc)]
            if pending:
                time.sleep(0.05)

    def _reap(self) -> None:
        """Collect the exit status of orphans re-parented to this process (not the launcher: its Popen waits)."""
        for pid in list(self.known):
            if pid == self.root.pid:
                continue
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue


class AfterWork:
    """A launch whose ranks have all finished but that does not end: what holds it open is stopped.

    Forked by the fork server, the ranks are torch elastic's children and it waits on pipes they
    inherited; a daemon a rank started inherits them too, and the launch would never end while it
    lived. LINGER_S after every rank marked its work done, the processes that left the launcher's
    tree are stopped (the launcher then ends as usual); 3 x LINGER_S after, the watch loop is told
    to stop everything, and the measurements are kept with a warning.
    """

    def __init__(self, tree: LaunchProcesses, grace_s: float) -> None:
        self.tree, self.grace_s = tree, grace_s
        self.since: float | None = None
        self.detached = -1  # processes stopped by stop_detached (-1: not yet tried)
        self.gave_up = False  # the launch was stopped for not ending

    def check(self, finished: bool, now: float) -> bool:
        """From the watch loop, with whether every rank finished; True when the launch must be stopped."""
        if not finished:
            return False
        self.since = self.since or now
        waited = now - self.since
        if waited > 3 * LINGER_S:
            self.gave_up = True
            return True
        if waited > LINGER_S and self.detached < 0:
            self.detached = self.tree.stop_detached(self.grace_s)
        return False

    @property
    def stopped(self) -> int:
        """How many detached processes were stopped while the launch was still running."""
        return max(0, self.detached)

    @property
    def warning(self) -> str:
        """For a launch stopped because it did not end after its work."""
        return (
            f"the launch had not ended {3 * LINGER_S:g} s after every rank had finished, and was stopped; "
            "the measurements are kept"
        )


def _children(proc: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
    try:
        return proc.children(recursive=recursive)
    except psutil.Error:
        return []


def _parents(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.parents()
    except psutil.Error:
        return []


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            continue
