"""`rb`: the command line. This module only assembles the app: each command lives in a module
named for it (`*_cmd.py`), registered with one line below; the conventions they share (one-line
errors, exit codes, help with examples) are in `rb_cli.ui`."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from rb_cli import (
    approvals_cmd,
    control_cmd,
    executions_cmd,
    graph_cmd,
    new_cmd,
    replay_cmd,
    run_cmd,
    schema_cmd,
    stack_cmd,
    test_cmd,
    trigger_cmd,
    validate_cmd,
)
from rb_cli.audit_cmd import audit_app, fixture_app
from rb_cli.keys_cmd import keys_app
from rb_cli.loadtest_cmd import loadtest_app
from rb_cli.secrets_cmd import secrets_app
from rb_cli.ui import CONTEXT, App, examples, plain_help_types, register, version_option
from rb_common.secrets import renamed_notices
from rb_store import artifacts as _pg_backend  # noqa: F401 (registers RB_ARTIFACTS_BACKEND=postgres)

plain_help_types()

app = App(
    name="rb",
    help="Runbooks as code: validate, test, run and replay YAML runbooks; run the stack (rb up).",
    epilog=examples(
        "rb up                                  # the whole stack on this machine",
        "rb validate runbooks/ && rb test runbooks/rb-000-hello",
        "rb COMMAND -h                          # each command's options and examples",
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", is_eager=True, callback=version_option, help="print rb's version"),
    ] = False,
) -> None:
    for notice in renamed_notices(os.environ):  # every command, `rb serve` included
        print(f"rb: {notice}", file=sys.stderr, flush=True)


# Local: runbook files in this process.
register(app, validate_cmd.validate, epilog=validate_cmd.EXAMPLES)
register(app, test_cmd.test, epilog=test_cmd.EXAMPLES)
register(app, run_cmd.run, epilog=run_cmd.EXAMPLES)
register(app, replay_cmd.replay, epilog=replay_cmd.EXAMPLES)
register(app, graph_cmd.graph, epilog=graph_cmd.EXAMPLES)
register(app, new_cmd.new, epilog=new_cmd.EXAMPLES)
register(app, schema_cmd.schema, epilog=schema_cmd.EXAMPLES)
app.add_typer(audit_app, name="audit")
app.add_typer(fixture_app, name="fixture")
# The stack.
register(app, stack_cmd.up, epilog=stack_cmd.UP_EXAMPLES)
register(app, stack_cmd.serve, epilog=stack_cmd.SERVE_EXAMPLES)
# Through the API of a running stack.
register(app, trigger_cmd.trigger, epilog=trigger_cmd.EXAMPLES)
register(app, executions_cmd.executions, epilog=executions_cmd.EXECUTIONS_EXAMPLES)
register(app, executions_cmd.logs, epilog=executions_cmd.LOGS_EXAMPLES)
register(app, executions_cmd.alerts, epilog=executions_cmd.ALERTS_EXAMPLES)
register(app, approvals_cmd.approvals_list, "approvals", epilog=approvals_cmd.APPROVALS_EXAMPLES)
register(app, approvals_cmd.approve, epilog=approvals_cmd.APPROVE_EXAMPLES)
register(app, approvals_cmd.reject, epilog=approvals_cmd.REJECT_EXAMPLES)
register(app, control_cmd.cancel, epilog=control_cmd.CANCEL_EXAMPLES)
register(app, control_cmd.pause, epilog=control_cmd.PAUSE_EXAMPLES)
register(app, control_cmd.resume, epilog=control_cmd.RESUME_EXAMPLES)
register(app, control_cmd.retry, epilog=control_cmd.RETRY_EXAMPLES)
register(app, control_cmd.event, epilog=control_cmd.EVENT_EXAMPLES)
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(loadtest_app, name="loadtest")


def main() -> None:
    app()


# The names command modules imported from the single-file main.py of before; new modules use
# rb_cli.ui and rb_cli.api_client directly.
from rb_cli.api_client import api_url as _api  # noqa: E402
from rb_cli.api_client import request as _call  # noqa: E402
from rb_cli.follow import print_event as _print_event  # noqa: E402
from rb_cli.resolve import read_mapping as _read_mapping  # noqa: E402
from rb_cli.ui import console as _console  # noqa: E402
from rb_cli.ui import err_console as _err  # noqa: E402
from rb_cli.ui import key_values as _params  # noqa: E402
from rb_cli.ui import user_errors  # noqa: E402

__all__ = [
    "_api",
    "_call",
    "_console",
    "_err",
    "_params",
    "_print_event",
    "_read_mapping",
    "app",
    "main",
    "user_errors",
]
