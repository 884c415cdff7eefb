"""The CLI's conventions, for every command module (`rb_cli/*_cmd.py`):

- errors: raise `RbError("message")` (or call `fail`); `@user_errors` prints it as ONE line,
  `error: message`, on stderr and exits 2. Usage errors (unknown command or option, missing
  argument) are the same one line, exit 2, never a box (`App.__call__`).
- help: `-h`/`--help` everywhere; every option has a `help=`; types are shown click-style
  (`TEXT`, `PATH`) or as the option's `metavar`, never as Python types; a command's examples
  go in its epilog: `@app.command(epilog=examples("rb x ...  # what it does"))`.
- output: `console()` for results (stdout), `err_console()` for notes and errors (stderr).
- exit codes: 0 ok, 1 the check failed (invalid, failed run/test, deviating replay), 2 bad usage
  or input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer._click import exceptions as click  # Typer vendors click: its exceptions, not click's
from typer.core import TyperArgument, TyperOption

from rb_common.errors import RbError
from rb_common.params import coerce_cli_value

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"]}


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def one_line(message: str) -> str:
    """A message as one line: its lines joined with '; '."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


def print_error(message: str) -> None:
    err_console().print(f"[red]error:[/red] {escape(one_line(message))}")


def fail(message: str) -> NoReturn:
    raise RbError(message)


def user_errors(func: F) -> F:
    """Bad input is one line and exit code 2, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RbError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def examples(*lines: str) -> str:
    """A command's epilog: one example per line, `command  # what it does`."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


def key_values(pairs: list[str], option: str = "--param") -> dict[str, Any]:
    """`key=value` options as a mapping (values coerced like the API's: numbers, booleans)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RbError(f"{option} takes key=value, got {pair!r}")
        result[key] = coerce_cli_value(value)
    return result


def rb_version() -> str:
    try:
        return version("rb")
    except PackageNotFoundError:  # pragma: no cover - a source tree without an install
        return "unknown"


def _option_type(self: TyperOption, ctx: Any) -> str | None:
    if self.metavar is not None:
        return self.metavar
    if self.is_flag or self.count:
        return None
    kind: Any = getattr(self, "type", None)
    name = (kind.get_metavar(self, ctx) if kind is not None else None) or str(
        getattr(kind, "name", "value")
    ).upper()
    return f"{name}..." if self.multiple else name


def _argument_type(self: TyperArgument, ctx: Any) -> str | None:
    return None  # the argument's name (its metavar) says it


def plain_help_types() -> None:
    """Typer shows Python types in help (`<list[Path]>`, `<bool>`); rb shows click's names
    (`PATH`, `TEXT`), an option's metavar, and nothing for flags."""
    TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
    TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign,assignment]


class App(typer.Typer):
    """The root `rb` app: usage errors are one line (`error: ...`, exit 2), not a box."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            result = super().__call__(*args, **kwargs)
        except click.NoArgsIsHelpError as exc:
            if not typer.core.HAS_RICH:  # rich help was printed while the error was made
                print(exc.format_message())
            sys.exit(2)
        except click.UsageError as exc:
            hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            print_error(exc.format_message() + hint)
            sys.exit(2)
        except click.ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            print("aborted", file=sys.stderr)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


def version_option(value: bool) -> None:
    if value:
        print(f"rb {rb_version()}")
        raise typer.Exit(0)


def register(
    app: typer.Typer, func: Callable[..., Any], name: str | None = None, epilog: str | None = None
) -> None:
    """One line in main.py per command: `register(app, module.command, epilog=module.EXAMPLES)`."""
    app.command(name, epilog=epilog)(user_errors(func))
