"""The command line: parses, calls, prints. Only this package imports Typer and rich.

Each area has its own module with its own Typer app; heavy libraries are imported
inside commands so `aifactory --help` starts instantly.
"""

from __future__ import annotations

import importlib
import sys

import typer

from aifactory.cli import floor, line, plan, twin
from aifactory.cli import serve as serve_cli
from aifactory.cli.apps import new_app
from aifactory.cli.text import printable
from aifactory.core.errors import AifactoryError

app = new_app(
    name="aifactory",
    help="An AI factory: share GPUs (floor), run the production line, replay the floor (twin), plan compute.",
    no_args_is_help=True,
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, help="Print the version and exit.", callback=lambda v: _version(v)
    ),
    ca: str | None = typer.Option(
        None, "--ca", help="Verify the server's TLS certificate with this CA file (default: config.toml ca)."
    ),
) -> None:
    """An AI factory: share GPUs (floor), run the production line, replay the floor (twin), plan compute."""
    if ca is not None:
        import os

        os.environ["AIFACTORY_CA"] = ca  # read by the client the command makes


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"aifactory {version('aifactory')}")
        raise typer.Exit(0)


floor.register(app)
line.register(app)
serve_cli.register(app)
app.command("export-trace")(twin.export_trace)
app.add_typer(twin.app, name="twin", help="Replay traces on the digital twin and compare what-ifs.")
app.add_typer(plan.app, name="plan", help="The arithmetic of AI compute: cost, energy, carbon, scaling laws.")


def _click_errors() -> tuple[type[Exception], ...]:
    """The click exception base classes in use: click's own, and the copy a Typer release may bundle
    (typer._click) -- checking only one let every usage error out as a traceback."""
    kinds: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            kinds.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(kinds)


def main() -> None:
    """Entry point: users get a one-line error and exit code 2, never a traceback."""
    try:
        app(standalone_mode=False)
    except AifactoryError as exc:
        _fail(str(exc))
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except _click_errors() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command: its help, as the user asked
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        message = exc.format_message()  # type: ignore[attr-defined]
        _fail(" ".join(message.split()))
    except Exception as exc:  # a bug of ours: still no traceback for the user, but say where to look
        log_file = _crash_log(exc)
        _fail(f"internal error ({type(exc).__name__}: {exc}); details in {log_file}")


def _fail(message: str) -> None:
    typer.secho(f"error: {printable(message)}", err=True, fg=typer.colors.RED)
    sys.exit(2)


def _crash_log(exc: Exception) -> str:
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="aifactory-crash-", suffix=".txt", delete=False) as f:
        traceback.print_exception(exc, file=f)
        return f.name
