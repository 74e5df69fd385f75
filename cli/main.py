"""The `avel-dgl` click group. Commands live in sibling modules; this file only gathers them and
turns user errors (AvelError, bad options) into one line on stderr and a non-zero exit.
Anything else is a bug and raises with its traceback; --debug shows tracebacks for all errors."""

from __future__ import annotations

import sys
import warnings

import click

from avel_dgl.errors import AvelError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AvelError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"avel-dgl: {e.kind}: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # a malformed option of a command: one line too
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
            click.echo(f"avel-dgl: error: {e.format_message()}{where}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """DPNet for audio-visual event localization on DGL heterographs."""
    ctx.obj = {"debug": debug}
    if not debug:  # data warnings (e.g. multi-label rows) as one line, like errors
        warnings.showwarning = lambda message, *_: click.echo(f"avel-dgl: warning: {message}", err=True)


# One module per area; each exposes COMMANDS, a list of click commands.
COMMAND_MODULES = (
    "data_commands",  # check-data
    "synthetic_commands",  # make-synthetic
    "train_commands",  # train, evaluate
    "subevent_commands",  # build-subevents
    "ablate_commands",  # ablate
    "use_commands",  # predict, report, fam
    "video_commands",  # extract, localize
)


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cli.{name}")
        for command in module.COMMANDS:
            main.add_command(command)


_register()

if __name__ == "__main__":
    main()
