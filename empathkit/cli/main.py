"""The ``empathkit`` console script. Each command group lives in its own module and is added here in one line."""

from __future__ import annotations

import importlib

import typer

from empathkit.cli.common import quiet_libraries

app = typer.Typer(help="empathkit: train, evaluate and serve empathetic dialogue models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", envvar="EMPATHKIT_VERBOSE",
                                       help="debug logging plus the libraries' warnings, logs, progress bars and "
                                            "Trainer log lines (default: empathkit's messages, one bar per stage)")):
    quiet_libraries(verbose)


@app.command("methods")
def methods():
    """List registered methods."""
    from empathkit.methods import METHODS

    for name, spec in METHODS.items():
        typer.echo(f"{name:12s} {spec.description}")


# command groups (sub-apps) and single commands: (module, attribute, name, kind)
_COMMANDS = [
    ("empathkit.cli.data", "app", "data", "group"),
    ("empathkit.cli.generate", "generate", "generate", "command"),
    ("empathkit.cli.evaluate", "evaluate", "evaluate", "command"),
    ("empathkit.cli.humaneval", "app", "humaneval", "group"),
    ("empathkit.cli.classifiers", "app", "classifiers", "group"),
    ("empathkit.cli.train", "train", "train", "command"),
    ("empathkit.cli.report", "report", "report", "command"),
    ("empathkit.cli.demo", "demo", "demo", "command"),
    ("empathkit.cli.chat", "chat", "chat", "command"),
    ("empathkit.cli.serve", "serve", "serve", "command"),
    ("empathkit.cli.retrieve", "retrieve", "retrieve", "command"),
    ("empathkit.cli.annotate", "annotate", "annotate", "command"),
    ("empathkit.cli.export", "export", "export", "command"),
]

for _mod, _attr, _name, _kind in _COMMANDS:
    _obj = getattr(importlib.import_module(_mod), _attr)
    if _kind == "group":
        app.add_typer(_obj, name=_name)
    else:
        app.command(_name)(_obj)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
