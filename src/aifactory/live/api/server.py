"""Run the API server in the foreground: `aifactory up` or `python -m aifactory.live.api.server`.

The listening socket is bound here (port 0 picks a free one), so the real URL is
known before uvicorn starts; it goes to `$AIFACTORY_HOME/server.json` with our
pid once the server accepts connections, and is removed on a clean exit.
SIGINT/SIGTERM stop the server but not the jobs: they run in their own process
groups and are re-attached by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from aifactory.atomic import write_atomic
from aifactory.core.errors import AifactoryError, SpecError
from aifactory.live.api.app import create_app
from aifactory.live.api.auth import ensure_admin_token
from aifactory.live.lease import LEASE, Leadership
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings, parse_settings
from aifactory.live.store import Store
from aifactory.netutil import bind_tcp, http_url, is_loopback, tls_files


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after shutdown (we still have to close the service)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def _announce(server: uvicorn.Server, server_file: Path, url: str) -> None:
    """Write server.json once uvicorn accepts connections, so clients that find it can connect."""
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    write_atomic(server_file, json.dumps({"url": url, "pid": os.getpid()}))
    print(f"aifactory: serving on {url} (token in {server_file.parent / 'token'}); Ctrl-C stops", file=sys.stderr)


def _remove_if_ours(server_file: Path) -> None:
    try:
        if json.loads(server_file.read_text()).get("pid") == os.getpid():
            server_file.unlink()
    except (OSError, ValueError):
        pass


def refuse_if_served(server_file: Path) -> None:
    """Two servers on one home would both launch the same queued jobs: refuse to be the second.

    A server.json left by a crash names a dead pid or a closed port, and is ignored.
    """
    try:
        info = json.loads(server_file.read_text())
        pid, url = int(info["pid"]), str(info["url"])
        os.kill(pid, 0)
        host, _, port = url.split("://", 1)[-1].rpartition(":")
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
    except (OSError, ValueError, KeyError, TypeError):
        return
    raise SpecError("home", f"a factory server (pid {pid}) already serves {server_file.parent} at {url}")


async def serve(settings: LiveSettings, executor: str | None = None) -> None:
    """Open the factory, serve its API until SIGINT/SIGTERM, then close it (jobs keep running)."""
    refuse_if_served(settings.server_file)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    tls = tls_files(settings.tls_cert, settings.tls_key)
    if not tls and not is_loopback(settings.host):
        if not settings.insecure:
            raise SpecError(
                "host",
                f"{settings.host} is reachable from the network and tokens would cross it in clear: "
                "give --tls-cert/--tls-key (or --insecure to allow plain HTTP)",
            )
        print(
            f"aifactory: WARNING: plain HTTP on {settings.host} (--insecure): every token crosses the network in clear",
            file=sys.stderr,
        )
    sock = bind_tcp(settings.host, settings.port)
    leaders: list[Leadership] = []

    async def lead(store: Store) -> None:
        # Once the settings are checked and before anything is written or launched.
        leaders.append(Leadership(store, settings.lease_ttl_s))
        await leaders[0].take(wait=not settings.no_wait, said=lambda text: print(text, file=sys.stderr, flush=True))

    try:
        service = await FactoryService.open(settings, executor or settings.executor, lead=lead)
    except BaseException:
        sock.close()
        if leaders and leaders[0].term is not None:  # a start that failed must not hold the store
            with contextlib.suppress(Exception), Store(settings.database_url) as store:
                store.release_lease(LEASE, leaders[0].holder)
        raise
    leader = leaders[0]
    keeper: asyncio.Task[None] | None = None
    try:
        ensure_admin_token(service.store, settings.token_path, getpass.getuser())
        config = uvicorn.Config(
            create_app(service),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
            **tls,  # type: ignore[arg-type]
        )
        server = _Server(config)
        keeper = asyncio.create_task(leader.keep(on_lost=lambda: setattr(server, "should_exit", True)))
        url = http_url(settings.host, sock.getsockname()[1], bool(tls))
        print(f"aifactory: isolation: {service.isolation.describe()}", file=sys.stderr)
        quota, gpus = service.quota_sum()
        if quota > gpus + 1e-9:
            print(
                f"aifactory: note: quotas add up to {quota:g} GPUs on a floor of {gpus}: over-subscribed",
                file=sys.stderr,
            )
        announce = asyncio.create_task(_announce(server, settings.server_file, url))
        try:
            await server.serve(sockets=[sock])
        finally:
            announce.cancel()
            _remove_if_ours(settings.server_file)
    finally:
        if keeper is not None:
            keeper.cancel()
        with contextlib.suppress(Exception):
            leader.release()  # a standby takes over at once, not a lease later
        await service.close()
        sock.close()


def run(settings: LiveSettings, executor: str | None = None) -> None:
    asyncio.run(serve(settings, executor))


def parse_args(argv: list[str] | None = None) -> LiveSettings:
    """The same options as `aifactory up`, from LiveSettings (settings_parser)."""
    return parse_settings(sys.argv[1:] if argv is None else argv, "python -m aifactory.live.api.server")


def main(argv: list[str] | None = None) -> None:
    try:
        run(parse_args(argv))
    except AifactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
