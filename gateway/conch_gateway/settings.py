"""Gateway settings, from environment variables (prefix CONCH_; PORT also works)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONCH_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, validation_alias=AliasChoices("PORT", "CONCH_PORT"), description="Port to listen on.")
    model_source: Literal["local", "kubernetes"] = Field("local", description="Where the model list comes from.")
    local_models_file: Path | None = Field(None, description="YAML file of Model resources (local source).")
    watch_namespace: str | None = Field(None, description="Namespace of Models to serve (kubernetes source); all if unset.")
    default_model: str | None = Field(None, description="Model of the APIs without a model field (TGI, /api/v1); "
                                      "unset means the only text-generation model, if there is one.")
    stream_transport: Literal["http", "grpc"] = Field(
        "http", description="How streams reach Triton: http (generate_stream; cheaper, and Triton 2.51 was measured to "
        "cancel it on disconnect) or grpc (ModelStreamInfer, for Models that publish grpcAddress; the cancellation "
        "Triton documents).")
    inference_timeout_s: float = Field(60.0, gt=0, description="Time limit of one inference.")
    inference_timeout_per_token_s: float = Field(0.5, ge=0, description="Time limit grows with max tokens asked.")
    stream_idle_timeout_s: float = Field(30.0, gt=0, description="Longest wait for a stream's next token; a "
                                         "backend silent longer (hung, not just slow) ends the stream with 504.")
    shutdown_grace_s: float = Field(20.0, ge=0, description="On SIGTERM, how long requests in flight may run on "
                                    "before they are stopped (503 SHUTTING_DOWN; streams get an error event). "
                                    "Keep it below the pod's terminationGracePeriodSeconds.")
    health_probe_interval_s: float = Field(2.0, gt=0, description="How often the local source probes Triton.")
    backend_pool_size: int = Field(512, ge=1, description="Connections kept to inference servers.")
    cors_allow_origins: list[str] = Field([], description="Origins allowed by CORS (none unless listed; '*' for any).")
    log_level: str = Field("info", description="Python log level.")
    access_log: bool = Field(False, description="Log every request (costs throughput).")
    opentelemetry: bool = Field(False, description="FastAPI's own OpenTelemetry spans, metrics and logs, sent to "
                                "the providers the process configures (e.g. opentelemetry-instrument); off, "
                                "FastAPI skips its per-request provider checks (~5% of the gateway's CPU).")

    # Who may call (docs/auth.md) ------------------------------------------------------------
    auth: Literal["auto", "on", "off"] = Field(
        "auto", description="Require credentials: on, off, or auto (off when listening on loopback only, on otherwise).")
    auth_source: Literal["auto", "local", "kubernetes"] = Field(
        "auto", description="Where API keys, users and JWT signing keys come from: labelled Secrets watched in "
        "auth_namespace (kubernetes), or auth_keys_file / CONCH_AUTH_ADMIN_KEY (local); auto follows model_source.")
    auth_keys_file: Path | None = Field(None, description="YAML file of hashed API keys, users and signing keys "
                                        "(local source; `python -m conch_gateway.auth` writes entries).")
    auth_admin_key: SecretStr | None = Field(None, description="An admin API key given in the environment (local "
                                             "source); only its hash is kept.")
    auth_namespace: str | None = Field(None, description="Namespace of the credential Secrets; defaults to the "
                                       "gateway pod's own namespace.")
    auth_service_accounts: bool = Field(True, description="Accept Kubernetes ServiceAccount tokens (TokenReview), "
                                        "authorized per Model by SubjectAccessReview (verb invoke on models).")
    auth_token_audiences: list[str] = Field(["conch"], description="Audiences a ServiceAccount token must carry "
                                            "(a projected token made for the gateway, never the API server's).")
    auth_review_cache_s: float = Field(10.0, ge=0, description="How long TokenReview and SubjectAccessReview "
                                       "answers are reused.")
    auth_token_ttl_s: int = Field(3600, ge=60, le=86400, description="Lifetime of tokens from POST /api/auth/token.")
    # How much (docs/auth.md) -----------------------------------------------------------------
    redis_url: SecretStr | None = Field(None, description="Redis for quotas shared by every replica; in-process "
                                        "counters when unset.")
    redis_timeout_s: float = Field(0.25, gt=0, description="Time limit of one Redis call.")
    redis_failure: Literal["local", "closed"] = Field(
        "local", description="While Redis is unreachable: local (each replica counts on its own, so the whole "
        "fleet may accept up to limit x replicas) or closed (503 LIMITS_UNAVAILABLE).")
    default_requests_per_minute: int | None = Field(None, ge=1, description="Limit of callers whose credential "
                                                    "sets none (ServiceAccounts, anonymous).")
    default_tokens_per_minute: int | None = Field(None, ge=1, description="Same, tokens (prompt + completion).")
    default_max_parallel: int | None = Field(None, ge=1, description="Same, requests in flight.")
    # Overload (docs/auth.md) ------------------------------------------------------------------
    max_body_bytes: int = Field(4 * 2**20, ge=1024, description="Largest request body (413 beyond).")
    body_timeout_s: float = Field(30.0, gt=0, description="Time to receive a whole request body (408 beyond).")
    header_timeout_s: float = Field(10.0, gt=0, description="Time to receive a request's headers (connection "
                                    "closed beyond: slowloris).")
    gc_threshold: int = Field(20_000, ge=0, description="Allocations between two collections of Python's youngest "
                              "garbage generation (Python's default: 700; 0 turns the cyclic collector off). Each "
                              "request allocates hundreds of objects, so at 700 the collector ran every few requests: "
                              "a quarter of the gateway's CPU or more under load (bench/README.md). Memory is freed "
                              "by reference counting as before; only reference cycles wait longer.")
    max_connections: int = Field(2048, ge=1, description="Connections plus requests in flight per process "
                                 "(uvicorn limit_concurrency; 503 beyond).")
    max_in_flight_per_replica: int = Field(64, ge=1, description="Generations in flight per ready Triton replica "
                                           "of a model; more wait.")
    admission_wait_s: float = Field(5.0, ge=0, description="Longest wait for a model's slot (429 MODEL_OVERLOADED "
                                    "beyond, and when as many already wait as run).")
    template_timeout_s: float = Field(1.0, gt=0, description="Time limit of rendering a Model's own chat template.")
    template_max_chars: int = Field(1_000_000, ge=1000, description="Longest prompt a chat template may render.")
    external_url_allowlist: list[str] = Field(
        [], description="URL patterns (fnmatch) external Models may point at; empty allows any host except "
        "link-local addresses (cloud metadata).")
    # Chat sessions (issue 17, docs/sessions.md): seed 002's /chat, /reset, /status.
    session_ttl_s: float = Field(3600.0, gt=0, description="A chat session is forgotten after this long unused.")
    session_max_in_memory: int = Field(10_000, ge=1, description="Sessions kept in process when CONCH_REDIS_URL "
                                       "is unset (least recently used dropped beyond).")
    session_lock_wait_s: float = Field(600.0, gt=0, description="Longest wait for a session busy with another "
                                       "/chat (409 SESSION_BUSY beyond).")
    # Monitoring (issue 16, docs/monitoring.md): where /api/config and its alert rules are kept locally.
    monitoring_state_dir: Path | None = Field(None, description="Directory of monitoring-config.json and "
                                              "alert-rules.yml (a Prometheus rule file); kept in memory only "
                                              "when unset.")
    monitoring_history_size: int = Field(100_000, ge=100, description="Requests kept by the in-process history "
                                         "behind /api/monitoring (oldest dropped beyond).")
    monitoring_config_map: str | None = Field(
        None, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="ConfigMap ([namespace/]name; the pod's namespace by default) holding /api/config and its alert "
        "rules, watched by every replica (the chart sets it); the state dir or memory when unset.")
    monitoring_prometheus_rule: str | None = Field(
        None, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="Name of a PrometheusRule (monitoring.coreos.com/v1), in the ConfigMap's namespace and owned by "
        "it, that this replica keeps holding every rule of /api/config/alerts where that CRD is installed (the chart "
        "sets it for the management API only, the one allowed to write it); the ConfigMap alone when unset.")
    monitoring_prometheus_rule_labels: dict[str, str] = Field(
        {}, description="Labels of that PrometheusRule, as JSON, for prometheus-operator's ruleSelector (the chart "
        "passes monitoring.labels, e.g. {\"release\": \"kube-prometheus-stack\"}).")
    # Model management (issue 16, docs/management.md): seed 003's /api/models, on only where it may write.
    management: bool = Field(False, description="Serve the model management routes (/api/models, "
                             "/api/v1/models/{id}/…, /modify_cluster_state). In a cluster only the management "
                             "Deployment, whose ServiceAccount may write Models, turns it on.")
    management_namespace: str | None = Field(None, description="Namespace of the Models it manages; defaults to "
                                             "watch_namespace, then the pod's own namespace.")
    management_triton_url: str | None = Field(None, description="Local Triton (laptop); defaults to the first "
                                              "model's endpoint in local_models_file.")
    management_repository_dir: Path | None = Field(None, description="Local Triton's model repository; defaults "
                                                   "to `repository` beside local_models_file.")
    management_triton_log: Path | None = Field(None, description="Local Triton's log file; defaults to "
                                               "`triton/tritonserver.log` beside local_models_file.")
