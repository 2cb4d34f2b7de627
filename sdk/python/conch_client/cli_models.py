"""`conch models …`, `conch apply` and `conch logs`: the models the gateway serves (/v1/models) and
the management API (seed 003's /api/models), for scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
import yaml

from .cli_output import EXIT_USAGE, client, emit, fail, run
from .errors import ConchError

models_app = typer.Typer(help="Models served by the gateway (list) and managed by it "
                              "(get/create/delete/start/stop/restart).", no_args_is_help=True)


def _dump(model: Any) -> dict:
    return model.model_dump(exclude_none=True)


@models_app.command("list")
def models_list(managed: bool = typer.Option(False, "--managed", help="The management API's list (/api/models), "
                                             "with status and health, instead of what is served (/v1/models)."),
                status: Optional[str] = typer.Option(None, help="With --managed: running|starting|stopped|error."),
                framework: Optional[str] = typer.Option(None, help="With --managed: llama.cpp, tensorrt-llm, …")) -> None:
    """Models the gateway serves, or (--managed) the models it manages."""
    if managed:
        found = run(lambda: client().managed_models(size=100, status=status, framework=framework))
        emit([_dump(m) for m in found])
    else:
        emit([m.model_dump(include={"id", "status", "owned_by"}) for m in run(lambda: client().list_models())])


@models_app.command("get")
def models_get(model_id: str) -> None:
    """One managed model (/api/models/ID): status, health, config, resource_version."""
    emit(_dump(run(lambda: client().get_model(model_id))))


@models_app.command("create")
def models_create(name: str,
                  model_path: str = typer.Option(..., help="A .gguf file the server can read (config.model_path)."),
                  framework: str = typer.Option("llama.cpp", help="The runtime."),
                  n_ctx: Optional[int] = typer.Option(None, help="Context length (config.n_ctx)."),
                  n_threads: Optional[int] = typer.Option(None, help="CPU threads (config.n_threads)."),
                  display_name: Optional[str] = typer.Option(None), description: Optional[str] = typer.Option(None),
                  priority: Optional[int] = typer.Option(None, help="0–100."),
                  tag: List[str] = typer.Option([], help="A tag; repeat for several.")) -> None:
    """Create a managed model (POST /api/models); it starts on its own — watch `conch models get NAME`."""
    config = {k: v for k, v in {"model_path": model_path, "n_ctx": n_ctx, "n_threads": n_threads}.items() if v is not None}
    spec = {k: v for k, v in {"display_name": display_name, "description": description, "priority": priority,
                              "tags": tag or None}.items() if v is not None}
    emit(_dump(run(lambda: client().create_model(name, framework, config, **spec))))


@models_app.command("delete")
def models_delete(model_id: str) -> None:
    """Delete a managed model."""
    run(lambda: client().delete_model(model_id))
    emit({"id": model_id, "status": "deleted"})


_WAIT = typer.Option(None, "--timeout", help="Wait up to this many seconds for the change (exit 4 with "
                     "OPERATION_TIMEOUT if it has not happened by then; it still goes on).")


@models_app.command("start")
def models_start(model_id: str, timeout: Optional[float] = _WAIT) -> None:
    """Start a stopped model (its replicas back to their last value)."""
    emit(_dump(run(lambda: client().start_model(model_id, timeout))))


@models_app.command("stop")
def models_stop(model_id: str, timeout: Optional[float] = _WAIT) -> None:
    """Stop a model (replicas to 0; its definition stays)."""
    emit(_dump(run(lambda: client().stop_model(model_id, timeout))))


@models_app.command("restart")
def models_restart(model_id: str) -> None:
    """Restart a running model."""
    emit(_dump(run(lambda: client().restart_model(model_id))))


def _specs(file: typer.FileText) -> list[dict]:
    """The model bodies a YAML/JSON file holds: one per document, or a list in one document."""
    try:
        documents = [doc for doc in yaml.safe_load_all(file) if doc is not None]
    except yaml.YAMLError as exc:
        raise fail(f"{Path(file.name).name} is not YAML or JSON: {exc}", EXIT_USAGE)
    specs = [spec for doc in documents for spec in (doc if isinstance(doc, list) else [doc])]
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise fail(f"every model in {Path(file.name).name} is a mapping with a name (seed 003's POST /api/models "
                       f"body), not {spec!r:.80}", EXIT_USAGE)
    if not specs:
        raise fail(f"{Path(file.name).name} describes no model", EXIT_USAGE)
    return specs


def _apply_one(spec: dict) -> dict:
    # Like kubectl apply: create, or replace the definition of the model that already exists.
    http = client()
    body = dict(spec)
    name = body.pop("name")
    try:
        done = http.create_model(name, body.pop("framework", None), body.pop("config", None), **body)
        return {"id": name, "action": "created", "status": done.status}
    except ConchError as error:
        if error.code != "MODEL_ALREADY_EXISTS":
            raise
    updated = http.update_model(name, **spec)
    return {"id": name, "action": "updated", "status": updated.status}


def apply(file: typer.FileText = typer.Option(..., "-f", "--file", help="YAML/JSON model spec(s); `-` for stdin.")) -> None:
    """Create the models a YAML/JSON file describes, or replace those that exist.

    Each model is seed 003's POST /api/models body (one per YAML document, or a list). Stops at the
    first refusal; what was applied before it stays."""
    specs = _specs(file)
    results = []
    for spec in specs:
        results.append(run(lambda s=spec: _apply_one(s)))
    emit(results)


def logs(model_id: str, tail: int = typer.Option(100, help="Lines from the end."),
         since: Optional[int] = typer.Option(None, help="Only the last N seconds."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C ends).")) -> None:
    """A managed model's logs (text, whatever --output says)."""
    if not follow:
        text = run(lambda: client().model_logs(model_id, tail=tail, since=since))
        typer.echo(text, nl=not text.endswith("\n"))
        return

    def print_lines() -> None:
        for line in client().follow_logs(model_id, tail=tail, since=since):
            typer.echo(line)

    try:
        run(print_lines)
    except KeyboardInterrupt:
        pass  # following ends with Ctrl-C: not an error
