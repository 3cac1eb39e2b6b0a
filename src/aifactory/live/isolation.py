"""How a job is kept apart from the server and from other tenants, on the node that runs it.

Shared by every executor's node side. Three levels (`--isolation`):

- `full` (the default where the server runs as root): each factory user's jobs run as their own
  unprivileged Unix account (the `[users]` table of config.toml maps factory users to accounts;
  an unmapped user gets `aif-<name>`, created on first use), in a cgroup that holds them to the
  CPU, memory and GPU devices they were given, with a clean environment and a private scratch
  directory. The factory home stays 0700: tokens, the database and other jobs' logs are out of reach.
- `none` (the default where the server is not root, e.g. a laptop): jobs run as the server's
  account, with the same clean environment. Tenants are NOT isolated from each other or from the
  server's files; `up` says so.

The job's environment is built, never inherited: the job's own variables, then a short allow-list
from the server (PATH, LANG, LC_ALL, TZ), then what the factory sets (HOME, USER, TMPDIR,
AIFACTORY_*, CUDA_VISIBLE_DEVICES), which the job's own cannot override.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aifactory.core.errors import AifactoryError, SpecError
from aifactory.core.job import JobSpec, Placement
from aifactory.live.cgroups import JobGroups, Limits, detect

log = logging.getLogger(__name__)

LEVELS = ("auto", "full", "none")
ALLOWED_FROM_SERVER = ("PATH", "LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
MAX_TASKS = 4096  # processes and threads per job: a fork bomb stays inside its own job


class IsolationError(AifactoryError):
    """The job cannot be isolated as configured (no account, no cgroup): it does not start."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True)
class JobLaunch:
    """What the wrapper needs to start one job: who it runs as, which groups it joins, its env."""

    env: dict[str, str]
    scratch: Path
    account: Account | None = None  # None: the server's own account
    cgroups: tuple[str, ...] = ()

    def wrapper_options(self) -> list[str]:
        """The wrapper's options (`--uid`, `--gid`, `--cgroup`), before its positional arguments."""
        out: list[str] = []
        if self.account is not None:
            out += ["--uid", str(self.account.uid), "--gid", str(self.account.gid)]
        for path in self.cgroups:
            out += ["--cgroup", path]
        return out


def unit(job_id: int, part: int = 0) -> str:
    """The cgroup name of a job, or of one rank of a multi-node gang."""
    return f"job-{job_id}" if part == 0 else f"job-{job_id}-r{part}"


def unix_name(user: str) -> str:
    """`aif-<user>` made a valid account name (a hash where the user's name had to change)."""
    base = re.sub(r"[^a-z0-9_-]", "", user.lower())[:20]
    name = f"aif-{base}"
    if base != user:
        name += "-" + hashlib.sha256(user.encode()).hexdigest()[:6]
    return name


@dataclass
class Isolation:
    level: str  # "full" or "none" (auto resolved)
    jobs_dir: Path  # per-job scratch directories live here, outside the 0700 home
    users: Mapping[str, str] = field(default_factory=dict)  # factory user -> Unix account
    groups: JobGroups | None = None
    create_accounts: bool = True
    _accounts: dict[str, Account] = field(default_factory=dict)

    @classmethod
    def configure(cls, level: str, home: Path, users: Mapping[str, str] | None = None, here: bool = True) -> Isolation:
        """Resolve `auto` and check that `full` can be had here; IsolationError says why not.
        `here` False: jobs run on other machines (Ray), each of which resolves the level itself
        (`on_node`); nothing is checked or made here."""
        if level not in LEVELS:
            raise SpecError("isolation", f"must be one of {', '.join(LEVELS)}, got {level!r}")
        tag = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:10]
        name = f"aifactory-{tag}"
        if not here:
            return cls(level, Path(os.environ.get("TMPDIR", "/tmp")) / name, dict(users or {}))
        return cls.on_node(level, name, users)

    @classmethod
    def on_node(cls, level: str, name: str, users: Mapping[str, str] | None = None) -> Isolation:
        """The isolation of the machine this runs on, for the factory whose jobs directory is
        `name` (under $TMPDIR): `auto` is full where this process is root, else none."""
        root = os.geteuid() == 0
        if level == "auto":
            level = "full" if root else "none"
        if level == "full" and not root:
            raise IsolationError("isolation: full needs root on the node that runs jobs (to switch accounts)")
        jobs_dir = Path(os.environ.get("TMPDIR", "/tmp")) / name
        groups = None
        if level == "full":
            version = detect()
            if version is None:
                raise IsolationError("isolation: full needs a writable cgroup hierarchy (v2, or v1 cpu/memory/devices)")
            groups = JobGroups(name, version)
        jobs_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(jobs_dir, 0o711)  # others may reach their own job directory, not list the rest
        return cls(level, jobs_dir, dict(users or {}), groups)

    def describe(self) -> str:
        if self.level == "auto":
            return "auto on each node (full where the node's Ray runs as root, else none)"
        if self.level == "full" and self.groups is None:
            return "full on each node (one Unix account per user, a cgroup per job, clean environment)"
        if self.level == "full":
            assert self.groups is not None
            return f"full (one Unix account per user, {self.groups.level}, clean environment)"
        who = pwd.getpwuid(os.geteuid()).pw_name
        return f"none (jobs run as {who} with a clean environment; tenants are NOT isolated from each other)"

    @property
    def short(self) -> str:
        return self.level

    # -- accounts -----------------------------------------------------------------------------

    def account(self, user: str) -> Account:
        """The Unix account `user`'s jobs run as (created where unmapped and allowed)."""
        known = self._accounts.get(user)
        if known is not None:
            return known
        name = self.users.get(user) or unix_name(user)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if user in self.users or not self.create_accounts:
                raise IsolationError(f"no Unix account {name!r} for user {user!r} (config.toml [users])") from None
            entry = self._create(name)
        if entry.pw_uid == 0:
            raise IsolationError(f"user {user!r} maps to {name!r}, which is root: jobs never run as root")
        found = self._accounts[user] = Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
        return found

    def _create(self, name: str) -> pwd.struct_passwd:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        cmd += ["--shell", "/usr/sbin/nologin", name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 9):  # 9: made meanwhile by another server
            raise IsolationError(f"cannot create Unix account {name!r}: {done.stderr.strip()}")
        log.info("created Unix account %s for factory jobs", name)
        return pwd.getpwnam(name)

    # -- one job -------------------------------------------------------------------------------

    def scratch(self, job_id: int, part: int = 0) -> Path:
        """The job's private directory (HOME, TMPDIR); a gang's rank k > 0 has its own beside it."""
        return self.jobs_dir / unit(job_id, part)

    def prepare(
        self, job_id: int, spec: JobSpec, placement: Placement, factory_env: Mapping[str, str], part: int = 0
    ) -> JobLaunch:
        """Make the job's scratch directory and cgroups (`part`: a gang's rank, a group of its own);
        its account and environment.

        IsolationError: it cannot be isolated as configured (the job must not start)."""
        account = self.account(spec.user) if self.level == "full" else None
        scratch = self.scratch(job_id, part)
        scratch.mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            os.chown(scratch, account.uid, account.gid)
        cgroups: tuple[str, ...] = ()
        if self.groups is not None:
            gpus = tuple(g for _, idx in placement.parts for g in idx)
            limits = Limits(spec.cpu_milli, spec.memory_mib, gpus, MAX_TASKS)
            try:
                cgroups = tuple(str(p) for p in self.groups.create(unit(job_id, part), limits))
            except OSError as exc:
                raise IsolationError(f"cannot make the job's cgroup: {exc}") from None
        env = {k: os.environ[k] for k in ALLOWED_FROM_SERVER if k in os.environ}
        env.setdefault("PATH", DEFAULT_PATH)
        env |= dict(spec.env)
        name = account.name if account is not None else pwd.getpwuid(os.geteuid()).pw_name
        env |= {"HOME": str(scratch), "USER": name, "LOGNAME": name, "TMPDIR": str(scratch), **factory_env}
        return JobLaunch(env, scratch, account, cgroups)

    def finished(self, job_id: int, part: int = 0) -> None:
        """After the job's wrapper has exited: nothing of it may run on, its groups go."""
        if self.groups is not None:
            self.groups.kill_all(unit(job_id, part))
            self.groups.remove(unit(job_id, part))

    def kill_all(self, job_id: int, part: int = 0) -> None:
        if self.groups is not None:
            self.groups.kill_all(unit(job_id, part))

    def remove_scratch(self, job_id: int, part: int | None = None) -> None:
        """Remove the job's scratch directory (`part`: one rank's; None: every rank's)."""
        paths = [self.scratch(job_id, part)] if part is not None else [self.scratch(job_id)]
        if part is None:
            paths += self.jobs_dir.glob(f"{unit(job_id)}-r*")
        for path in paths:
            with contextlib.suppress(OSError):
                shutil.rmtree(path)
