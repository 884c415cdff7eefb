"""Settings from the environment (prefix RB_), built once at start-up and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RB_", extra="ignore")

    home: Path = Path(".rb")
    runbooks_dir: Path = Path("runbooks")
    nats_url: str = "nats://127.0.0.1:4222"
    # Prefixes every stream, subject, durable and KV bucket: stacks and test sessions that share
    # a NATS server never see each other (`rb` keeps the names RB_EVENTS, rb.exec.<id>, ...).
    namespace: str = Field(default="rb", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    # Copies of every JetStream stream and KV bucket, made when they are created: 1 on one
    # nats-server, 3 on a cluster. Existing streams keep a higher count set by an operator; see
    # the README ("Moving to a NATS cluster") to change the count of a running deployment.
    stream_replicas: int = Field(default=1, ge=1, le=5)
    database_url: str | None = None
    api_addr: str = "127.0.0.1:8080"
    # Where the CLI's client commands find the API (default: http://RB_API_ADDR, or the URL a
    # running `rb up` recorded in RB_HOME/stack.json).
    api_url: str | None = None
    # Where `rb serve executor|worker|recorder|scheduler|notifier` answer /health/live and
    # /health/ready (HOST:PORT); unset, they serve no HTTP at all.
    health_addr: str | None = None
    # rb's own key: it encrypts the secret store (comma-separated Fernet keys, newest first; see
    # `rb secrets rotate`). Formerly RB_SECRET_KEY, which now means nothing: RB_SECRET_<NAME>
    # are step secrets only (rb_common.secrets).
    master_key: SecretStr | None = None
    # Step secrets besides RB_SECRET_<NAME> and the encrypted store: a directory with one file
    # per secret (a Kubernetes secret volume, a Vault agent's output); workers re-read their
    # secrets at most every secrets_cache_seconds.
    secrets_dir: Path | None = None
    secrets_cache_seconds: float = Field(default=5.0, ge=0)
    # HMAC secrets of signed trigger sources (PagerDuty V3 webhooks, generic webhooks), and how
    # far a signed timestamp (or PagerDuty's occurred_at) may be from now; within it a signature
    # or event id is accepted once.
    pagerduty_webhook_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    trigger_replay_window: float = Field(default=300.0, gt=0)
    # Trigger sources that cannot sign: a bearer token, or basic auth "user:password".
    alertmanager_token: SecretStr | None = None
    alertmanager_basic_auth: SecretStr | None = None
    grafana_token: SecretStr | None = None
    grafana_basic_auth: SecretStr | None = None
    cloudevents_token: SecretStr | None = None
    slack_token: str | None = None
    slack_base_url: str | None = None
    # The Slack app's signing secret: the API checks Approve / Reject clicks with it
    # (POST /api/v1/slack/interactivity); without it the endpoint refuses every request.
    slack_signing_secret: SecretStr | None = None
    smtp_url: str | None = None
    pushgateway_url: str | None = None
    # Named SQL connections for sql_query steps: RB_CONNECTIONS='{"reporting": "postgresql://..."}'
    connections: dict[str, str] = Field(default_factory=dict)
    max_concurrency: int = Field(default=8, ge=1)
    worker_concurrency: int = Field(default=32, ge=1)
    # Admission (rb_common.slots): at most this many executions run at once over all executors
    # (more wait QUEUED, in arrival order); past max_queued_executions waiting, the API answers
    # 429 with Retry-After: queue_retry_after seconds, and a start that gets through anyway (a
    # cron fire, an alert) is recorded as refused. The executors check every
    # admission_sweep_seconds that no slot is held by an execution that ended.
    max_running_executions: int = Field(default=100, ge=1)
    max_queued_executions: int = Field(default=1000, ge=0)
    queue_retry_after: int = Field(default=5, ge=1)
    admission_sweep_seconds: float = Field(default=2.0, gt=0)
    # Whether `rb serve executor` runs step workers beside the coordinator (they hand outcomes to
    # it directly); false leaves the steps to `rb serve worker` processes.
    executor_workers: bool = True
    # How long a task stays with a silent worker before another one gets it: workers send
    # in-progress acks at least every second while a step runs, so this bounds recovery from a
    # crash, not the length of a step (keep it above 2 s).
    task_ack_wait: float = Field(default=5.0, gt=0)
    # How many times a task is handed out before its step is failed as lost (a step that kills
    # or hangs its worker every time); the waits between deliveries double from task_ack_wait.
    task_max_deliver: int = Field(default=10, ge=2)
    # On SIGTERM, how long running steps may finish before they are stopped and their tasks
    # handed back to the other workers.
    worker_shutdown_grace: float = Field(default=5.0, ge=0)
    # The recorder's durable consumer; one per database. "new" starts a NEW consumer at the end
    # of the stream instead of replaying it (for throwaway databases in tests and benchmarks).
    recorder_consumer: str = "recorder"
    # Scheduler: how late a missed cron fire may still run, whether missed fires collapse into
    # one, and how often the registry is re-read for new, changed or paused schedules.
    scheduler_misfire_grace: float = Field(default=30.0, gt=0)
    scheduler_coalesce: bool = True
    scheduler_reload_seconds: float = Field(default=2.0, gt=0)
    # Notifier: sender, defaults for runbooks without notify rules, links, delivery.
    notify_from: str = "rb@localhost"
    notify_default_slack_channel: str | None = None
    notify_default_on: str = "failed,aborted,approval_requested"  # comma-separated
    public_url: str | None = None
    notifier_consumer: str = "notifier"
    notifier_deliver: Literal["all", "new"] = "new"
    notifier_filter_subject: str | None = None  # default: every execution of the namespace
    notifier_ack_wait: float = Field(default=60.0, gt=0)
    notifier_max_in_flight: int = Field(default=64, ge=1)
    notify_max_attempts: int = Field(default=0, ge=0)  # 0: retry until the channel's deadline
    notify_retry_initial: float = Field(default=1.0, gt=0)
    notify_retry_max: float = Field(default=300.0, gt=0)  # the backoff's cap (before jitter)
    notify_send_timeout: float = Field(default=30.0, gt=0)
    # How long a notifier's claim on a Slack delivery holds off the other notifiers (they wait,
    # then look in Slack for the post and send only if it is not there). Keep it above
    # notify_send_timeout: a live claimant's post must not outlast its claim.
    notify_claim_lease: float = Field(default=60.0, gt=0)
    notify_max_event_age: float = Field(default=86_400.0, ge=0)  # older events are not announced
    # -- durable notifications and signed links (issue 13; README "Notifications") -------------
    # How long a notification is retried before it is given up (notification.failed), per
    # channel; unset: notify_deadline. Keep them under a day (the inbox keeps the record 1 day).
    notify_deadline: float = Field(default=6 * 3600.0, gt=0)
    notify_deadline_slack: float | None = Field(default=None, gt=0)
    notify_deadline_email: float | None = Field(default=None, gt=0)
    notify_deadline_webhook: float | None = Field(default=None, gt=0)
    # Where a notification.failed is announced (any of them; none: nowhere).
    notify_fallback_slack_channel: str | None = None
    notify_fallback_email: str | None = None  # comma-separated addresses
    notify_fallback_webhook: str | None = None
    # Links in messages open the API's execution page through an HMAC-signed URL that expires:
    # the key is link_key, else one derived from the master key; without either, no links.
    link_key: SecretStr | None = None
    link_ttl: float = Field(default=86_400.0, gt=0)
    # Access (README "Access"). An admin API key the API seeds at start (idempotent; a revoked key
    # stays revoked); `rb up` generates one into RB_HOME/admin.key when this is unset.
    bootstrap_admin_key: SecretStr | None = None
    # The key the CLI's client commands send (default: RB_HOME/admin.key, written by `rb up`).
    api_key: SecretStr | None = None
    # How long the API trusts a key it looked up (rb_api.key_cache): a revocation through another
    # API process takes effect within this; through the same process at once. 0: every request.
    auth_cache_seconds: float = Field(default=2.0, ge=0)
    # One log line per API request (uvicorn's access log): off by default, the request counts and
    # latencies are in the API's /metrics; a log line per request cost ~9% of its CPU under load.
    api_access_log: bool = False
    # API processes sharing RB_API_ADDR's port. Above 1, `rb serve api` binds with SO_REUSEPORT
    # (Linux: the kernel spreads new connections over the processes), so that more processes can
    # join it; `rb up` starts this many (its default: 2, `rb up --api-processes`).
    api_processes: int = Field(default=1, ge=1, le=32)
    # OIDC/JWT bearer tokens: issuer and audience are checked, algorithms pinned; the keys come
    # from the JWKS URL (fetched with httpx, cached) or a PEM public key.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_public_key: str | None = None
    oidc_algorithms: str = "RS256"  # comma-separated; never "none" or an HMAC algorithm
    oidc_roles_claim: str = "roles"
    oidc_teams_claim: str = "groups"
    oidc_jwks_cache_seconds: float = Field(default=300.0, ge=0)
    oidc_leeway_seconds: float = Field(default=30.0, ge=0)
    # Browser origins allowed to call the API (comma-separated); unset, no CORS headers at all.
    cors_origins: str | None = None
    # The web console's build (index.html, assets/) the API serves at `/`; unset: web/dist of
    # the source tree (rb_api.console).
    console_dir: Path | None = None
    # The niceness a service runs at (0..19, applied once when `rb serve` starts; it only ever
    # lowers the priority, so 0 leaves the process as it was started). Under `rb up` the API
    # keeps this value (and NATS `rb up`'s own) and the services that do the work (executor with
    # its workers and their step processes, recorder, notifier, scheduler) get `rb up
    # --work-nice` (10): on a saturated machine the front door answers first. In Kubernetes,
    # CPU requests do this.
    nice: int = Field(default=0, ge=0, le=19)
    # Linux's SCHED_IDLE for the service, every thread of it and its step processes: they run on
    # the CPU time nothing at a normal priority wants (below any niceness). `rb up` gives it to
    # the work services with `--work-idle` (off by default: other normal-priority work on the
    # machine, a build, a second load, can then starve them outright): a niceness alone left the API's
    # execute p95 at 134 ms on a saturated two-core machine, SCHED_IDLE brought it to ~100 ms
    # (bench/loadtest.md). Ignored where there is no SCHED_IDLE.
    sched_idle: bool = False
    # Every service's log level (DEBUG, INFO, WARNING, ERROR).
    log_level: str = "INFO"
    # How services write their log lines (rb_common.logs): "json", one JSON object a line with
    # the execution and step ids (for log collectors; the default), or "text" for humans.
    log_format: Literal["json", "text"] = "json"
    # Traces (rb_common.tracing): OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318; the
    # spans go to <endpoint>/v1/traces). Unset, nothing of OpenTelemetry is loaded. The standard
    # OpenTelemetry variable, not an RB_ one, so that collectors' docs apply as they are.
    otel_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_endpoint")
    )
    recorder_deliver: Literal["all", "new"] = "all"

    # -- step sandbox and egress (issue 12; README "What a step can reach") --------------------
    # The user shell steps run as: default "nobody" when the worker runs as root; a worker that
    # is not root runs them as itself (and says so once in its log).
    shell_user: str | None = None
    # Per-process limits of every process a shell step starts (RLIMIT_CPU seconds, RLIMIT_AS,
    # RLIMIT_FSIZE) and RLIMIT_NPROC, which the kernel counts per uid: every process and thread
    # of the step user, on the whole host, shares it (only applied under a separate step user).
    shell_cpu_seconds: int = Field(default=3600, ge=1)
    shell_memory_mb: int = Field(default=1024, ge=64)
    shell_file_size_mb: int = Field(default=1024, ge=1)
    shell_max_processes: int = Field(default=256, ge=1)
    # Directories a shell step's `cwd` may name (comma-separated absolute paths); none by
    # default: a step works in a fresh directory of its own, removed after the attempt.
    shell_cwd_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Where the per-attempt directories are made (default: the system's temp directory).
    shell_work_dir: Path | None = None
    # Private, loopback and shared addresses steps may connect to (comma-separated host names
    # and CIDRs, e.g. "127.0.0.1/32,db.internal"); link-local and metadata addresses never.
    egress_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Outside events for wait_for_event steps: how long before a step starts waiting an event
    # may have arrived and still count (matched from the stream), and the largest body.
    event_buffer_seconds: float = Field(default=300.0, ge=0)
    event_max_bytes: int = Field(default=64 * 1024, ge=1024)

    # -- the `ai` step (issue 14; docs/runbook-format.md "ai") ----------------------------------
    # An OpenAI-compatible endpoint: steps POST to {ai_base_url}/chat/completions, through the
    # egress policy, with ai_api_key as the bearer token (never recorded) and ai_model unless the
    # step names a model.
    ai_base_url: str | None = None
    ai_api_key: SecretStr | None = None
    ai_model: str = "gpt-4o-mini"
    # Content-addressed blobs (screenshots, diff images): `file` under RB_ARTIFACTS_DIR
    # (default RB_HOME/artifacts), `postgres`: large objects in RB_DATABASE_URL's database, or
    # `s3`: objects in RB_ARTIFACTS_S3_BUCKET (any S3-compatible endpoint; credentials from the
    # settings below, else boto3's usual chain).
    artifacts_backend: Literal["file", "postgres", "s3"] = "file"
    artifacts_dir: Path | None = None
    artifacts_s3_bucket: str | None = None
    artifacts_s3_prefix: str = "rb-artifacts/"
    artifacts_s3_endpoint: str | None = None  # e.g. http://minio:9000; None: AWS
    artifacts_s3_region: str | None = None
    artifacts_s3_access_key_id: str | None = None
    artifacts_s3_secret_access_key: SecretStr | None = None
    # The browser `ui_screenshot` drives (Playwright over Chromium; Debian's package by default).
    chromium_path: Path = Path("/usr/bin/chromium")

    @field_validator("shell_cwd_roots", "egress_allow", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and (self.oidc_jwks_url or self.oidc_public_key))

    @property
    def oidc_algorithm_list(self) -> list[str]:
        return [a.strip() for a in self.oidc_algorithms.split(",") if a.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in (self.cors_origins or "").split(",") if o.strip()]

    @property
    def artifacts_path(self) -> Path:
        return self.artifacts_dir or self.home / "artifacts"

    @property
    def events_dir(self) -> Path:
        return self.home / "executions"
