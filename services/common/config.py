"""Configuration of every Grantflow process, read from the environment (pydantic-settings).

Every endpoint is configuration so the same code runs on the embedded stack, a Temporal cluster,
an Apache Kafka cluster and PostgreSQL. Variable names are the field names in upper case, e.g.
TEMPORAL_ADDRESS, KAFKA_BOOTSTRAP_SERVERS, APPLICATIONS_DATABASE_URL.

GRANTFLOW_PROFILE=production makes every process refuse to start with a setting that only suits
a development machine (see `production_problems`); `get_settings` turns that refusal into an exit
with one readable message instead of a stack trace.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development-only signing key for bearer tokens; real deployments set AUTH_SECRET.
DEV_AUTH_SECRET = "grantflow-dev-secret-change-me-in-production"
DEV_CONSOLE_SECRET = "grantflow-console-dev-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # "production" refuses development-only settings at start-up (production_problems).
    profile: Literal["development", "production"] = Field(
        default="development", validation_alias="GRANTFLOW_PROFILE"
    )

    data_dir: Path = Path("data")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "grantflow"
    temporal_ui_port: int = 8233

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = "grantflow"
    # Tansu joins consumer groups slowly with the client defaults; short timeouts help.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 500
    kafka_rebalance_timeout_ms: int = 3000
    # How long the broker may hold a fetch open waiting for records. Tansu answers when the wait
    # is over rather than when a record arrives, so this bounds the latency of every event hop.
    kafka_fetch_max_wait_ms: int = 100
    # Events of this many different keys (applications) are applied at once; one key's in order.
    kafka_consumer_concurrency: int = Field(default=16, ge=1)
    # The embedded broker (Tansu) keeps nothing on disk. On: relays publish their retained outbox
    # again and consumers read their topics from the start when it comes back empty (a new
    # incarnation marker, offsets going backwards). The embedded stack turns it on; leave it off
    # for a Kafka cluster, which keeps its log.
    kafka_embedded_broker_recovery: bool = False
    consumer_max_attempts: int = 5  # then the event goes to the dead-letter topic

    applications_address: str = "127.0.0.1:50051"
    review_address: str = "127.0.0.1:50052"
    disbursement_address: str = "127.0.0.1:50053"

    # Empty means a SQLite file under data_dir.
    applications_database_url: str = ""
    review_database_url: str = ""
    disbursement_database_url: str = ""
    treasury_database_url: str = ""
    # SQLite durability (WAL mode). FULL syncs the log on every commit: a commit survives a power
    # loss or an OS crash. NORMAL syncs only at checkpoints: a commit still survives the crash
    # of any process, but the last commits before a power loss or an OS crash can be rolled back
    # (the file stays consistent), in exchange for cheaper writes. Money and the services' answers
    # to the workflows are committed here, so FULL is the default; NORMAL suits a throw-away
    # embedded stack. PostgreSQL ignores it.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    # TLS for the gRPC servers (PEM files); unset means plaintext on the embedded stack.
    # Clients trust TLS_CA_FILE when it is set.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    # A second, plaintext port serving only the gRPC health service: Kubernetes' built-in gRPC
    # probes cannot speak TLS. Unset: no such port.
    health_port: int | None = Field(default=None, ge=1, le=65535)

    # The web console (console/): where it listens, and the key that signs its session and
    # CSRF cookies (the development default is public, like AUTH_SECRET's).
    console_address: str = "127.0.0.1:8080"
    console_session_secret: str = DEV_CONSOLE_SECRET
    # "dev": sign in as any development identity (role, department or enterprise, user).
    console_identity_provider: Literal["dev"] = "dev"

    auth_secret: str = DEV_AUTH_SECRET
    # Token the worker, consumers and services use to call each other.
    service_token: str = ""

    # The intake consumer asks the applications service whether a grant already closed only
    # for submissions older than this (a redelivery after Temporal may have forgotten the
    # workflow id); keep it well under the Temporal namespace's retention period.
    intake_redelivery_check_seconds: float = 3600.0

    outbox_poll_seconds: float = 0.2
    outbox_retention_hours: int = 24 * 7
    outbox_check_broker_seconds: float = 5.0

    # Timer overrides for demos and tests: when set, the period lasts this many seconds instead of
    # the program's working days.
    notice_period_seconds: float | None = None
    # A program's notice batch collects the awards decided within this long after its first one
    # and notices them together (one list, one budget allocation). A day by default.
    notice_batch_seconds: float = Field(default=24 * 3600.0, gt=0)
    # The process new grants run (workflows/models.py GrantInput.process_generation): 3, or 4 for
    # the whole review process (eligibility, experts, audit, join policies, notice batches with
    # objections). 3 until the demo and the stack's scenarios run the fourth (see README).
    grant_process_generation: int = Field(default=4, ge=3, le=4)
    supplement_period_seconds: float | None = None
    review_period_seconds: float | None = None

    # A funding plan whose total exceeds this (fen) needs a second approval: two finance
    # officers, neither its maker, approve it before it is paid. 500万元 by default.
    plan_second_approval_fen: int = Field(default=500_000_000, ge=0)
    # A clawback (追回) bars the enterprise from new applications for this many years: a credit
    # list entry (财政资金追回失信名单) valid from the clawback's opening.
    clawback_bar_years: int = Field(default=3, ge=1, le=20)

    # The disbursement service reconciles the previous Beijing day by itself, once, after this
    # hour (Beijing time), checking every reconciliation_check_s seconds (off by default:
    # `grantflow finance reconcile` runs it by hand).
    reconciliation_daily: bool = False
    reconciliation_daily_hour: int = Field(default=2, ge=0, le=23)
    reconciliation_check_s: float = Field(default=600.0, gt=0)

    # The payment gateway adapter; "simulated" is the local simulated treasury, the default.
    payment_gateway: str = "simulated"
    # The local simulated treasury.
    treasury_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    treasury_timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    treasury_seed: int | None = None
    # Payees whose accounts the simulated treasury refuses for good (comma-separated credit
    # codes): how a payment line fails at once in tests and demos.
    treasury_rejected_payees: str = ""
    # Late settlement: this share of payments is accepted ("settling") and settles this many
    # seconds later; the payment run resolves them by the gateway's status query.
    treasury_settle_delay_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    treasury_settle_delay_s: float = Field(default=60.0, ge=0.0)
    # Returns after settlement (退汇): this share of payments, and the first account of each payee
    # listed (comma-separated credit codes: a closed account), come back this many seconds after
    # they settled.
    treasury_return_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    treasury_return_delay_s: float = Field(default=0.0, ge=0.0)
    treasury_returned_payees: str = ""
    # Payments go only to a receiving account the recipient confirmed (收款账户); a line whose
    # award has none is failed with the reason. Off only for stacks whose scripted flows predate
    # receiving accounts (tests/stack_fixture.py).
    payment_requires_account: bool = True

    # The local enterprise registry (the edge adapter, workflows/registry.py): a JSON file of
    # registry records by credit code over the generated ones (empty: none), and whether every
    # generated address is in Shenzhen whatever division the code names. The credit list that
    # bars enterprises from fiscal funds is the applications service's data, not a setting.
    registry_data_file: str = ""
    registry_accept_all_divisions: bool = False

    # Notifications to applicants (services/applications/channels.py): the channels each event
    # is sent on, comma-separated, of log (the delivery log only), mail and sms. An attempt that
    # fails is retried after NOTIFICATION_RETRY_SECONDS, doubling, up to the maximum attempts.
    notification_channels: str = "log"
    notification_max_attempts: int = Field(default=5, ge=1, le=100)
    notification_retry_seconds: float = Field(default=30.0, gt=0)
    # The mail adapter: an SMTP relay (STARTTLS when SMTP_STARTTLS; a login when a user is set).
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_sender: str = ""
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    # The SMS adapter: an HTTP gateway taking a JSON POST {id, mobile, text} with a bearer token.
    sms_gateway_url: str = ""
    sms_gateway_token: str = ""
    sms_timeout_seconds: float = Field(default=10.0, gt=0)

    log_level: str = "INFO"
    log_json: bool = False  # the same as LOG_FORMAT=json
    # json: one JSON object a line, with application_id, workflow_id, trace_id and span_id
    # where known (for production log shippers); console: key=value lines for a terminal.
    log_format: Literal["json", "console"] = "console"

    # Observability. METRICS_PORT serves this process's Prometheus /metrics (0 = none);
    # TEMPORAL_METRICS_PORT has the Temporal SDK serve its own metrics (grantflow_temporal_*)
    # for the process's Temporal client and worker (0 = none). Both bind METRICS_HOST.
    # The embedded stack gives its processes ports counted up from STACK_METRICS_PORT (0 = no
    # metrics on the stack). Traces: the standard OTEL_EXPORTER_OTLP_ENDPOINT (tracing.py).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    temporal_metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    stack_metrics_port: int = Field(default=9460, ge=0, le=65535)

    @field_validator("notification_channels")
    @classmethod
    def _known_channels(cls, value: str) -> str:
        from services.common.vocabulary import NotificationChannel, VocabularyError

        try:
            for name in value.split(","):
                NotificationChannel.parse(name.strip())
        except VocabularyError as error:
            known = ", ".join(NotificationChannel)
            raise ValueError(f"unknown channel {error.value!r}; channels: {known}") from None
        return value

    def channels(self) -> list[str]:
        return list(dict.fromkeys(name.strip() for name in self.notification_channels.split(",")))

    @model_validator(mode="after")
    def _production_profile(self) -> Settings:
        problems = self.production_problems()
        if problems:
            raise ValueError(PRODUCTION_REFUSAL + "".join(f"\n  - {p}" for p in problems))
        return self

    def production_problems(self) -> list[str]:
        """What keeps these settings from the production profile, one line per environment
        variable (empty in the development profile)."""
        if self.profile != "production":
            return []
        problems: list[str] = []
        if self.auth_secret == DEV_AUTH_SECRET or len(self.auth_secret) < 32:
            problems.append(
                "AUTH_SECRET: 仍是公开的开发密钥或短于 32 个字符 / is the public development "
                "secret or shorter than 32 characters"
            )
        if not self.service_token:
            problems.append(
                "SERVICE_TOKEN: 未设置 / unset (grantflow token --role system --ttl-hours 8760)"
            )
        for name in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
            path: Path | None = getattr(self, name)
            if path is None:
                problems.append(
                    f"{name.upper()}: 未设置, 生产环境必须启用 TLS / unset: TLS is required"
                )
            elif not path.is_file():
                problems.append(f"{name.upper()}: 文件不存在 / no such file: {path}")
        if self.kafka_embedded_broker_recovery:
            problems.append(
                "KAFKA_EMBEDDED_BROKER_RECOVERY: 仅用于内嵌 Tansu, 须关闭 / only for the embedded "
                "broker: set it to false against a Kafka cluster"
            )
        databases = ["applications", "review", "disbursement"]
        if self.payment_gateway == "simulated":
            databases.append("treasury")
        for service in databases:
            url: str = getattr(self, f"{service}_database_url")
            if not url or url.startswith("sqlite"):
                problems.append(
                    f"{service.upper()}_DATABASE_URL: 生产环境不能用 SQLite / SQLite (or unset) "
                    "is not for production: a PostgreSQL URL"
                )
        if "mail" in self.channels() and not (self.smtp_host and self.smtp_sender):
            problems.append(
                "SMTP_HOST/SMTP_SENDER: 邮件通知已启用但未配置 / the mail channel is on without "
                "a relay or a sender address"
            )
        if "sms" in self.channels() and not self.sms_gateway_url:
            problems.append(
                "SMS_GATEWAY_URL: 短信通知已启用但未配置 / the SMS channel is on without a gateway"
            )
        for name in ("notice_period_seconds", "supplement_period_seconds", "review_period_seconds"):
            if getattr(self, name) is not None:
                problems.append(
                    f"{name.upper()}: 演示用的计时覆盖, 生产环境须删除 / a demo timer override: "
                    "unset it so periods count in working days"
                )
        return problems

    def database_url(self, service: str) -> str:
        explicit: str = getattr(self, f"{service}_database_url")
        if explicit:
            return explicit
        return f"sqlite:///{(self.data_dir / f'{service}.db').resolve()}"


PRODUCTION_REFUSAL = (
    "生产配置 (GRANTFLOW_PROFILE=production) 拒绝启动 / the production profile refuses to start:"
)


class SettingsRefused(SystemExit):
    """Settings that cannot run: the process exits non-zero with this message and no trace."""


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            where = ".".join(str(part) for part in error["loc"]).upper()
            lines.append(f"{where}: {message}" if where else message)
        raise SettingsRefused("配置无效 / invalid settings:\n" + "\n".join(lines)) from None
