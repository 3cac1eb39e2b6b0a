"""`aifactory serve REF`: serve a registered model over HTTP (see docs/serving.md)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the top-level app."""

    @app.command("serve")
    def serve(
        ref: str = typer.Argument("digits@champion", help="registry reference: digits@champion, digits@3, digits"),
        port: int = typer.Option(8500, help="TCP port; 0 picks a free one"),
        host: str = typer.Option("127.0.0.1", help="address to listen on"),
        max_batch: int = typer.Option(32, help="rows per model call"),
        max_wait_ms: float = typer.Option(5.0, help="how long a batch waits to fill, ms"),
        no_batching: bool = typer.Option(False, "--no-batching", help="run every request alone"),
        shadow: str | None = typer.Option(None, help="challenger to shadow, e.g. digits@challenger"),
        token_file: Path | None = typer.Option(
            None, help="require 'Authorization: Bearer <token>' (e.g. ~/.aifactory/token)"
        ),
        factory_tokens: bool = typer.Option(
            False, "--factory-tokens", help="also accept every token the floor knows (aifactory token create)"
        ),
        home: Path | None = typer.Option(None, help="factory home (default $AIFACTORY_HOME or ~/.aifactory)"),
        poll_s: float = typer.Option(0.5, help="registry poll period for hot swap, s (0: never)"),
        threads: int = typer.Option(1, help="torch intra-op threads"),
        log_url: str | None = typer.Option(None, help="prediction log database URL (default: SQLite under home)"),
    ) -> None:
        """Serve a model: dynamic batching, hot swap when its alias moves, optional shadow, feedback log."""
        from aifactory.serve.server import make_config, run

        config = make_config(
            ref=ref,
            home=home,
            host=host,
            port=port,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            batching=not no_batching,
            shadow=shadow,
            token_file=token_file,
            factory_tokens=factory_tokens,
            poll_s=poll_s,
            threads=threads,
            log_url=log_url,
        )
        run(config)
