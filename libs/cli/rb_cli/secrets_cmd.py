"""`rb secrets`: the encrypted secret store, administered on the database directly (like the
services: RB_DATABASE_URL or RB_HOME/rb.db, and RB_MASTER_KEY). Values are read from stdin or a
hidden prompt, never from an argument (arguments end up in shell history and `ps`), and are never
printed. Remote administrators use the API (`PUT /api/v1/secrets/{name}`, admin role)."""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from rb_cli.ui import CONTEXT, examples
from rb_common.errors import RbError
from rb_common.secrets import DirSecrets, MasterKeyError, check_name, generate_key, secrets_from_env
from rb_common.settings import Settings

if TYPE_CHECKING:
    from rb_store.secrets import SecretStore

secrets_app = typer.Typer(
    help="Step secrets in the encrypted store (needs RB_MASTER_KEY; values never shown).",
    no_args_is_help=True,
    context_settings=CONTEXT,
)


def _store(settings: Settings) -> SecretStore:
    from rb_store.db import database_url, make_engine, migrate
    from rb_store.secrets import SecretStore

    engine = make_engine(database_url(settings))
    migrate(engine)
    key = settings.master_key
    return SecretStore(engine, key.get_secret_value() if key else None)


def _fail(message: str) -> None:
    Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)


@secrets_app.command(
    "set",
    epilog=examples(
        "rb secrets set API_TOKEN   # hidden prompt", "vault read -field=v x | rb secrets set API_TOKEN"
    ),
)
def secrets_set(
    name: Annotated[str, typer.Argument(metavar="NAME", help="the name steps use: ${secrets.NAME}")],
) -> None:
    """Store a secret: the value is read from stdin (piped), else from a hidden prompt."""
    problem = check_name(name)
    if problem:
        _fail(problem)
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {name}: ")
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value  # `echo x |` adds one
    try:
        created = _store(Settings()).put(name, value, actor=f"cli:{getpass.getuser()}")
    except (MasterKeyError, RbError, ValueError) as exc:
        _fail(str(exc))
    Console(highlight=False).print(f"{'created' if created else 'updated'} secret {name}")


@secrets_app.command("list", epilog=examples("rb secrets list", "rb secrets list --json"))
def secrets_list(
    json_output: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Names in the store (created, updated, by whom), and the names RB_SECRET_* and
    RB_SECRETS_DIR provide; never a value."""
    settings = Settings()
    try:
        stored = _store(settings).names()
    except ValueError as exc:
        _fail(str(exc))
    env_names = sorted(secrets_from_env(os.environ))
    dir_names = sorted(DirSecrets(settings.secrets_dir).load()) if settings.secrets_dir else []
    if json_output:
        sys.stdout.write(json.dumps({"store": stored, "env": env_names, "dir": dir_names}, indent=2) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)
    shadowed = set(env_names) | set(dir_names)
    for row in stored:
        note = "  (shadowed by RB_SECRET_/RB_SECRETS_DIR)" if row["name"] in shadowed else ""
        console.print(
            f"{row['name']:<32} created {row['created_at']}  updated {row['updated_at']} "
            f"by {row['updated_by'] or '-'}{note}"
        )
    for source, names in (("env RB_SECRET_*", env_names), (f"dir {settings.secrets_dir}", dir_names)):
        for name in names:
            console.print(f"{name:<32} from {source}")
    if not (stored or env_names or dir_names):
        console.print("no secrets")


@secrets_app.command("delete", epilog=examples("rb secrets delete API_TOKEN"))
def secrets_delete(name: Annotated[str, typer.Argument(metavar="NAME", help="the secret's name")]) -> None:
    """Remove a secret from the store."""
    try:
        found = _store(Settings()).delete(name)
    except ValueError as exc:
        _fail(str(exc))
    if not found:
        _fail(f"secret {name!r} is not in the store")
    Console(highlight=False).print(f"deleted secret {name}")


@secrets_app.command(
    "rotate", epilog=examples("RB_MASTER_KEY=$(rb secrets keygen),$RB_MASTER_KEY rb secrets rotate")
)
def secrets_rotate() -> None:
    """Re-encrypt every stored value with the newest key of RB_MASTER_KEY (the first). Rotate a
    key: put the new key first (`RB_MASTER_KEY=new,old`), run this, then drop the old one."""
    try:
        count = _store(Settings()).rotate()
    except ValueError as exc:
        _fail(str(exc))
    Console(highlight=False).print(f"re-encrypted {count} secret(s) with the newest key")


@secrets_app.command("keygen", epilog=examples("export RB_MASTER_KEY=$(rb secrets keygen)"))
def secrets_keygen() -> None:
    """Print a new Fernet key for RB_MASTER_KEY."""
    sys.stdout.write(generate_key() + "\n")
