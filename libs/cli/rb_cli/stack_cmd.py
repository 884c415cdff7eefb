"""`rb up` (the whole stack on this machine) and `rb serve` (one service in the foreground)."""

from __future__ import annotations

from typing import Annotated

import typer

from rb_cli.ui import examples
from rb_common.settings import Settings

UP_EXAMPLES = examples(
    "rb up                                    # NATS, recorder, executor (+ workers), scheduler, notifier, API",
    "RB_API_ADDR=127.0.0.1:8181 RB_HOME=/tmp/rb rb up   # another port, another home",
    "RB_NATS_URL=nats://nats:4222 rb up       # join that NATS server instead of starting one",
    "rb up --work-nice 0                      # every service at the same priority",
    "rb up --work-idle                        # the work only on CPU time the API leaves",
    "rb up --api-processes 1                  # one API process (default 2 on Linux)",
)
SERVE_EXAMPLES = examples(
    "rb serve api                             # as docker-compose and Kubernetes run it",
    "RB_NATS_URL=nats://nats:4222 RB_DATABASE_URL=postgresql://... rb serve executor",
)


def serve(
    service: Annotated[
        str,
        typer.Argument(metavar="SERVICE", help="api | executor | worker | recorder | scheduler | notifier"),
    ],
) -> None:
    """Run one service in the foreground (for docker-compose, Kubernetes, or by hand); settings
    from the environment (RB_*)."""
    from rb_cli.services import serve as serve_service

    serve_service(service, Settings())  # the environment only: `rb up` passes its stack down


def up(
    load: Annotated[
        bool, typer.Option(help="register and approve the runbooks under RB_RUNBOOKS_DIR (as key:system)")
    ] = True,
    work_nice: Annotated[
        int,
        typer.Option(
            min=0,
            max=19,
            metavar="N",
            help="niceness of the recorder, executor (its workers and steps), scheduler and notifier; "
            "the API and NATS stay at RB_NICE (0), so they answer first on a saturated machine",
        ),
    ] = 10,  # rb_cli.services.WORK_NICE (not imported here: `rb -h` stays quick)
    work_idle: Annotated[
        bool,
        typer.Option(
            help="run those services and their steps under SCHED_IDLE (Linux): only on CPU time the "
            "API and NATS do not want (a busy machine can starve them: bench and dedicated machines)",
        ),
    ] = False,
    api_processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=32,
            metavar="N",
            help="API processes sharing RB_API_ADDR's port (SO_REUSEPORT; Linux, elsewhere 1); "
            "default RB_API_PROCESSES when set, else 2",
        ),
    ] = None,
) -> None:
    """The whole stack on this machine until Ctrl-C: NATS (its own nats-server, unless
    RB_NATS_URL is set), then the recorder, executor (coordinator and step workers), scheduler,
    notifier and API, each its own process. Data under RB_HOME (./.rb): SQLite rb.db, the NATS
    store, logs/, admin.key, stack.json (how the CLI finds this stack)."""
    from rb_cli.services import up as run_up

    # The environment only: no earlier stack's file.
    run_up(Settings(), load_runbooks=load, work_nice=work_nice, work_idle=work_idle, api_count=api_processes)
