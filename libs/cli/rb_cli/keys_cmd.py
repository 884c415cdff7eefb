"""`rb keys`: API keys, through the API (needs an admin key: RB_API_KEY or RB_HOME/admin.key)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from rb_cli.api_client import call
from rb_cli.stack import cli_settings
from rb_cli.ui import CONTEXT, console, err_console, examples, user_errors
from rb_common.errors import RbError

keys_app = typer.Typer(
    help="API keys (needs an admin key: RB_API_KEY or RB_HOME/admin.key).",
    no_args_is_help=True,
    context_settings=CONTEXT,
)

_DAYS = 86_400
Json = Annotated[bool, typer.Option("--json", help="print the API's JSON answer")]


def _expires_in(value: str) -> int:
    """Seconds: a number, or 30m / 12h / 90d."""
    from rb_common.durations import parse_duration

    text = value.strip().lower()
    try:
        seconds = float(text[:-1]) * _DAYS if text.endswith("d") else parse_duration(text)
    except ValueError:
        raise RbError(f"--expires-in {value!r}: use seconds or e.g. 30m, 12h, 90d") from None
    return int(seconds)


@keys_app.command(
    "create", epilog=examples("rb keys create ci-bot --role operator --team platform --expires-in 90d")
)
@user_errors
def keys_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="who holds the key (recorded as key:<name>)")],
    role: Annotated[
        list[str],
        typer.Option(
            "--role", "-r", metavar="ROLE", help="viewer, operator, approver, author, admin (repeat)"
        ),
    ],
    team: Annotated[
        list[str], typer.Option("--team", "-t", metavar="TEAM", help="a team the key belongs to (repeat)")
    ] = [],  # noqa: B006
    expires_in: Annotated[
        str | None, typer.Option(metavar="DURATION", help="e.g. 3600, 12h, 90d (default: never)")
    ] = None,
    json_output: Json = False,
    slack_user: Annotated[
        str | None,
        typer.Option(metavar="U…", help="Slack user id whose Approve/Reject clicks act as this key"),
    ] = None,
) -> None:
    """Create an API key; it is printed this once and never shown again."""
    settings = cli_settings()
    body: dict[str, Any] = {"name": name, "roles": role, "teams": team}
    if slack_user is not None:
        body["slack_user_id"] = slack_user
    if expires_in is not None:
        body["expires_in"] = _expires_in(expires_in)
    result = call("POST", "/api/v1/keys", settings, json=body)
    if json_output:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    err_console().print(
        f"key {result['id']} for {result['name']} ({', '.join(result['roles'])}); shown only now:"
    )
    sys.stdout.write(result["key"] + "\n")


@keys_app.command("list", epilog=examples("rb keys list", "rb keys list --all --json"))
@user_errors
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="revoked and expired keys too")] = False,
    json_output: Json = False,
) -> None:
    """API keys: id, name, roles, teams, state (never the keys themselves)."""
    settings = cli_settings()
    items = call("GET", "/api/v1/keys", settings)["items"]
    if not all_keys:
        items = [k for k in items if k.get("active")]
    if json_output:
        sys.stdout.write(json.dumps({"items": items}, indent=2) + "\n")
        return
    out = console()
    for k in items:
        state = "active" if k.get("active") else ("revoked" if k.get("revoked_at") else "expired")
        out.print(
            f"{k['id']}  {escape(k['name']):<20} {','.join(k['roles']):<24} "
            f"{escape(','.join(k['teams']) or '-'):<16} {state:<8} expires {k.get('expires_at') or 'never'}"
        )
    out.print(f"{len(items)} keys")


@keys_app.command("revoke", epilog=examples("rb keys revoke 8c1d2e"))
@user_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="the key's id (rb keys list)")],
) -> None:
    """Revoke an API key: it answers 401 from then on."""
    settings = cli_settings()
    result = call("DELETE", f"/api/v1/keys/{key_id}", settings)
    console().print(f"revoked {result['id']} ({escape(result['name'])})")
