"""`aifactory serve REF`: serve a registered model over HTTP (see docs/serving.md)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the top-level app: its options are the server's own (`serve_parser`)."""
    passthrough = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

    @app.command("serve", context_settings=passthrough, add_help_option=False)
    def serve(ctx: typer.Context) -> None:
        """Serve a model: dynamic batching, hot swap when its alias moves, optional shadow, feedback log."""
        from aifactory.serve.server import parse_args, run

        config, ready_file = parse_args(ctx.args, prog="aifactory serve")
        run(config, ready_file=ready_file)
