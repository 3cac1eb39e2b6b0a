"""The command line: parses, calls, prints. Only this package imports Typer and rich.

Each area has its own module with its own Typer app; heavy libraries are imported
inside commands so `aifactory --help` starts instantly.
"""

from __future__ import annotations

import sys

import typer

from aifactory.cli import floor, line, plan, twin
from aifactory.cli import serve as serve_cli
from aifactory.core.errors import AifactoryError

app = typer.Typer(
    name="aifactory",
    help="An AI factory: share GPUs (floor), run the production line, replay the floor (twin), plan compute.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
floor.register(app)
line.register(app)
serve_cli.register(app)
app.command("export-trace")(twin.export_trace)
app.add_typer(twin.app, name="twin", help="Replay traces on the digital twin and compare what-ifs.")
app.add_typer(plan.app, name="plan", help="The arithmetic of AI compute: cost, energy, carbon, scaling laws.")


def main() -> None:
    """Entry point: users get a one-line error and exit code 2, never a traceback."""
    try:
        app(standalone_mode=False)
    except AifactoryError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise
