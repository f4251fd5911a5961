"""A click group that imports a command's module only when that command is run or asked for help.

The group lists every command with a one-line summary it holds itself, so `whysim --help` imports
no command module at all, and `whysim index --help` only the one that defines `index`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class LazyCommand:
    target: str  # "package.module:attribute" of the click command
    summary: str  # its line in the group's --help


class LazyGroup(click.Group):
    def __init__(self, *args: object, lazy_commands: dict[str, LazyCommand], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = self.lazy_commands.get(cmd_name)
        if lazy is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = lazy.target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{lazy.target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the summaries, without importing any command."""
        rows = [(name, self.lazy_commands[name].summary) for name in self.list_commands(ctx)
                if name in self.lazy_commands]
        rows += [(name, command.get_short_help_str()) for name, command in self.commands.items()
                 if name not in self.lazy_commands]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))
