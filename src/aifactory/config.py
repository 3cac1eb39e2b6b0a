"""Where the factory lives and how to reach it: resolved here, once, for every command and both servers.

- The home: `--home`, else `$AIFACTORY_HOME`, else `~/.aifactory`; `~` is expanded and the path
  made absolute, so `AIFACTORY_HOME='~/af'` means the same directory to the server and the client.
- The user's settings: `HOME/config.toml` (mode 0600; `aifactory login` writes it):

      url = "http://gpu-head:8470"     # the server to talk to
      token = "..."                    # the user's token
      project = "vision"               # the default project of `submit`

      ca = "/etc/aifactory/ca.pem"     # the CA that signed the server's TLS certificate

      [floor]                          # defaults of `aifactory up` (a flag wins)
      db = "postgresql+psycopg://factory@db/factory"
      policy = "fairshare"
      policy_opts = ["half_life_s=3600"]
      isolation = "full"

      [users]                          # factory user -> the Unix account their jobs run as
      alice = "alice"

      [prices]                         # money per GPU-hour by GPU model (`aifactory usage`)
      "NVIDIA H100 80GB HBM3" = 2.5

- The server and token of a command: flags, else `$AIFACTORY_URL` / `$AIFACTORY_TOKEN`, else
  `config.toml`, else the local server's `server.json` and admin `token` file in the home.

Every error is a SpecError naming the field (`config.toml: floor.policy_opts: ...`).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aifactory.atomic import write_atomic
from aifactory.bounded import load_toml
from aifactory.core.errors import SpecError

HOME_ENV, URL_ENV, TOKEN_ENV = "AIFACTORY_HOME", "AIFACTORY_URL", "AIFACTORY_TOKEN"
CONFIG = "config.toml"
MAX_BYTES = 1 << 16


def resolve_home(path: str | Path | None = None) -> Path:
    """The factory's home: `path`, else `$AIFACTORY_HOME`, else `~/.aifactory` (absolute, `~` expanded)."""
    chosen = path if path not in (None, "") else os.environ.get(HOME_ENV) or Path.home() / ".aifactory"
    return Path(chosen).expanduser().absolute()


class FloorDefaults(BaseModel):
    """`[floor]`: what `aifactory up` uses where no flag says otherwise."""

    model_config = ConfigDict(extra="forbid")

    db: str | None = Field(default=None, min_length=1, max_length=4096)
    policy: str | None = Field(default=None, min_length=1, max_length=64)
    placement: str | None = Field(default=None, min_length=1, max_length=64)
    policy_opts: list[str] = Field(default_factory=list, max_length=64)
    isolation: str | None = Field(default=None, pattern=r"^(auto|full|none)$")


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2048, pattern=r"^https?://")
    token: str | None = Field(default=None, min_length=1, max_length=512)
    project: str | None = Field(default=None, min_length=1, max_length=128)
    ca: str | None = Field(default=None, min_length=1, max_length=4096)
    floor: FloorDefaults = Field(default_factory=lambda: FloorDefaults())
    users: dict[
        Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")],
        Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")],
    ] = Field(default_factory=dict, max_length=10_000)
    prices: dict[
        Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")],
        Annotated[float, Field(ge=0, allow_inf_nan=False)],
    ] = Field(default_factory=dict, max_length=1000)


@dataclass(frozen=True, slots=True)
class UserConfig:
    url: str | None = None
    token: str | None = None
    project: str | None = None
    floor: dict[str, Any] = field(default_factory=dict)  # FloorDefaults' fields that are set
    users: dict[str, str] = field(default_factory=dict)  # factory user -> Unix account
    ca: str | None = None
    prices: dict[str, float] = field(default_factory=dict)  # GPU model -> money per GPU-hour


def read_config(home: Path) -> UserConfig:
    """`home/config.toml`, validated whole (an absent file is an empty config)."""
    path = home / CONFIG
    if not path.is_file():
        return UserConfig()
    if path.stat().st_size > MAX_BYTES:
        raise SpecError("config", f"{path} is larger than {MAX_BYTES} bytes")
    try:
        data = load_toml(path.read_text(encoding="utf-8"), "config", str(path), MAX_BYTES)
        parsed = ConfigFile.model_validate(data)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError("config", f"{path}: not valid TOML ({exc})") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"config.{where}", f"{path}: {first['msg']}") from None
    floor = {k: v for k, v in parsed.floor.model_dump().items() if v not in (None, [])}
    return UserConfig(
        parsed.url, parsed.token, parsed.project, floor, dict(parsed.users), parsed.ca, dict(parsed.prices)
    )


def write_login(home: Path, url: str, token: str, project: str | None, ca: str | None = None) -> Path:
    """Store the server, token and default project in `home/config.toml` (0600), keeping the rest."""
    old = read_config(home)
    floor, users, ca = old.floor, old.users, ca or old.ca
    if ca is not None:
        ca = str(Path(ca).absolute())
    try:
        ConfigFile.model_validate(
            {"url": url, "token": token, "project": project, "floor": floor, "users": users, "ca": ca}
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise SpecError(".".join(str(p) for p in first["loc"]), first["msg"]) from None
    lines = [f"url = {json.dumps(url)}", f"token = {json.dumps(token)}"]
    if project is not None:
        lines.append(f"project = {json.dumps(project)}")
    if ca is not None:
        lines.append(f"ca = {json.dumps(ca)}")
    if floor:
        lines += ["", "[floor]", *(f"{k} = {json.dumps(v)}" for k, v in floor.items())]
    if users:
        lines += ["", "[users]", *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in users.items())]
    if old.prices:
        lines += ["", "[prices]", *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in old.prices.items())]
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / CONFIG
    write_atomic(path, "\n".join(lines) + "\n", mode=0o600)
    return path


@dataclass(frozen=True, slots=True)
class Connection:
    url: str | None  # None: no server found (where it looked is in `looked`)
    token: str | None
    looked: str


def connection(home: Path, url: str | None = None, token: str | None = None) -> Connection:
    """The server and token a command uses (see the module docstring for the order)."""
    config = read_config(home)
    url = url or os.environ.get(URL_ENV) or config.url
    token = token or os.environ.get(TOKEN_ENV) or (config.token if url == config.url else None)
    looked = f"${URL_ENV}, {home / CONFIG}, {home / 'server.json'}"
    try:
        local = str(json.loads((home / "server.json").read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        local = None
    url = url or local
    if url is None:
        return Connection(None, None, looked)
    if not token and url == local:  # the home's admin token goes to the home's own server only
        try:
            token = (home / "token").read_text().strip()
        except OSError:
            token = None
    return Connection(url, token, looked)
