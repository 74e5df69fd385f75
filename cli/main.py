"""The `avel-dgl` click group. Commands live in sibling modules; this file only gathers them and
turns user errors (AvelError, bad options) into one line on stderr and a non-zero exit (a config
error worded with the flags of its fields).
Anything else is a bug and raises with its traceback; --debug shows tracebacks for all errors."""

from __future__ import annotations

import sys
import warnings

import click

from avel_dgl import __version__
from avel_dgl.errors import AvelError, ConfigError, ConfigWarning
from cli.options import in_flags


def _usage_error(e: click.UsageError) -> None:
    """Click's own usage errors (unknown option or command, bad value) in the one-line format."""
    where = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
    click.echo(f"avel-dgl: error: {e.format_message()}{where}", err=True)
    sys.exit(e.exit_code)


class _Group(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug is the group's option, but users type it after the subcommand too.
        if "--debug" in args:
            args = ["--debug"] + [a for a in args if a != "--debug"]
        return super().parse_args(ctx, args)

    def make_context(self, info_name, args, parent=None, **extra):
        if parent is None and not args:  # bare `avel-dgl`: the help, not an error
            with click.Context(self, info_name=info_name) as ctx:
                click.echo(self.get_help(ctx))
            sys.exit(0)
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:  # e.g. `avel-dgl --bad`: before any subcommand
            if "--debug" in args:
                raise
            _usage_error(e)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AvelError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"avel-dgl: {e.kind}: {in_flags(e) if isinstance(e, ConfigError) else e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # a malformed option of a command, an unknown command: one line too
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _usage_error(e)


@click.group(cls=_Group)
@click.version_option(__version__, "--version", prog_name="avel-dgl", message="%(prog)s %(version)s",
                      help="Show the version and exit.")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors (also accepted after the subcommand).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """DPNet for audio-visual event localization on DGL heterographs."""
    ctx.obj = {"debug": debug}  # (--quiet is each command's: those that show bars hand it to Runtime.for_process)
    if not debug:  # warnings (e.g. multi-label rows) as one line, like errors; a config warning names flags
        warnings.showwarning = lambda message, *_: click.echo(
            f"avel-dgl: warning: {in_flags(message) if isinstance(message, ConfigWarning) else message}", err=True)


# One module per area; each exposes COMMANDS, a list of click commands.
COMMAND_MODULES = (
    "data_commands",  # check-data
    "synthetic_commands",  # make-synthetic
    "train_commands",  # train, evaluate
    "subevent_commands",  # build-subevents
    "ablate_commands",  # ablate
    "use_commands",  # predict, report, fam
    "video_commands",  # extract, localize, compare-features
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
