"""`conch`: serve a model, chat with it, and script the gateway's APIs.

Exit codes: 0 ok · 1 the server refused the request (4xx) · 2 bad usage · 3 cannot reach the server ·
4 the server failed or is overloaded (5xx/429) · 5 the server package is not installed (`serve`).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any, Optional

import httpx
import typer
import yaml

from .client import DEFAULT_URL, Client
from .errors import ConchError

app = typer.Typer(help="Conch: serve quantized LLMs, chat with them, script the gateway.", no_args_is_help=True)
models_app = typer.Typer(help="Models served by the gateway (list) and managed by it (get/create/delete/start/stop).")
keys_app = typer.Typer(help="API credentials: exchange a username and password for a bearer token.")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_SERVER, EXIT_NO_SERVER_PACKAGE = 1, 2, 3, 4, 5

_state: dict[str, Any] = {}


@app.callback()
def _root(url: str = typer.Option(DEFAULT_URL, "--url", envvar="CONCH_URL", help="The gateway's URL."),
          api_key: Optional[str] = typer.Option(None, "--api-key", envvar="CONCH_API_KEY", help="Bearer key."),
          output: str = typer.Option("table", "--output", "-o", help="json | yaml | table")) -> None:
    if output not in ("json", "yaml", "table"):
        raise typer.BadParameter("--output is json, yaml or table")
    _state.update(url=url, api_key=api_key, output=output)


def _client() -> Client:
    return Client(_state["url"], _state["api_key"], max_retries=1)


def _emit(data: Any) -> None:
    if _state["output"] == "json":
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif _state["output"] == "yaml":
        typer.echo(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).rstrip())
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        columns = list(data[0])[:5]
        typer.echo("\t".join(c.upper() for c in columns))
        for row in data:
            typer.echo("\t".join(str(row.get(c, "")) for c in columns))
    elif isinstance(data, dict):
        for key, value in data.items():
            typer.echo(f"{key}: {value}")
    else:
        typer.echo(data)


def _run(call: Any) -> Any:
    """Maps failures onto the documented exit codes, with the server's own message."""
    try:
        return call()
    except ConchError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_SERVER if error.status >= 500 or error.status == 429 else EXIT_REFUSED)
    except httpx.TransportError as error:
        typer.echo(f"error: cannot reach {_state['url']}: {error}", err=True)
        raise typer.Exit(EXIT_UNREACHABLE)


@app.command()
def serve(model: str = typer.Option("smollm2", help="smollm2 | qwen2 | llama3 | PATH.gguf | HF_REPO[:FILE]"),
          port: int = typer.Option(8000, help="The gateway's port."),
          device: str = typer.Option("auto", help="cpu | auto | cuda:N")) -> None:
    """Start the embedded stack (Triton + gateway) with one model, like seed 002's start_api.sh."""
    import importlib.util

    if importlib.util.find_spec("conch_engines") is None:
        typer.echo("error: `conch serve` needs the Conch server package (conch_engines); "
                   "install it from the repository with `make up` or `pip install -e .`", err=True)
        raise typer.Exit(EXIT_NO_SERVER_PACKAGE)
    argv = [sys.executable, "-m", "conch_engines", "up", "--model", model, "--port", str(port), "--device", device]
    os.execv(sys.executable, argv)  # the server owns the terminal and its signals from here


@models_app.command("list")
def models_list() -> None:
    """Models the gateway serves (/v1/models)."""
    _emit([m.model_dump(include={"id", "status", "owned_by"}) for m in _run(lambda: _client().list_models())])


@models_app.command("get")
def models_get(model_id: str) -> None:
    """One managed model (/api/models/ID)."""
    _emit(_run(lambda: _client().get_model(model_id)).model_dump())


@models_app.command("delete")
def models_delete(model_id: str) -> None:
    """Delete a managed model."""
    _run(lambda: _client().delete_model(model_id))


@models_app.command("start")
def models_start(model_id: str) -> None:
    _emit(_run(lambda: _client().model_action(model_id, "start")))


@models_app.command("stop")
def models_stop(model_id: str) -> None:
    _emit(_run(lambda: _client().model_action(model_id, "stop")))


@models_app.command("restart")
def models_restart(model_id: str) -> None:
    _emit(_run(lambda: _client().model_action(model_id, "restart")))


@app.command()
def apply(file: typer.FileText = typer.Option(..., "-f", "--file", help="YAML/JSON model spec(s), `-` for stdin.")) -> None:
    """Create the models a YAML or JSON file describes (seed 003's POST /api/models body)."""
    specs = [doc for doc in yaml.safe_load_all(file) if doc]
    client = _client()
    _emit([_run(lambda s=spec: client.create_model(**s)).model_dump() for spec in specs])


@app.command()
def logs(model_id: str, tail: int = typer.Option(100, help="Lines.")) -> None:
    """A managed model's logs."""
    result = _run(lambda: _client().model_logs(model_id, tail=tail))
    typer.echo("\n".join(result) if isinstance(result, list) else (result if isinstance(result, str) else json.dumps(result)))


@app.command()
def generate(prompt: str, model: Optional[str] = typer.Option(None, help="A model id; the default model if omitted."),
             max_tokens: int = typer.Option(128, help="Most tokens to generate."),
             stream: bool = typer.Option(False, help="Print tokens as they come.")) -> None:
    """Generate text once (/api/v1/generate)."""
    client = _client()
    if stream:
        def go() -> None:
            for event in client.generate_stream(prompt, model, max_tokens):
                typer.echo(event.token, nl=False)
            typer.echo()
        _run(go)
        return
    result = _run(lambda: client.generate(prompt, model, max_tokens))
    typer.echo(result.text) if _state["output"] == "table" else _emit(result.model_dump())


@keys_app.command("token")
def keys_token(username: str = typer.Option(..., prompt=True),
               password: str = typer.Option(..., prompt=True, hide_input=True)) -> None:
    """A bearer token for a username and password (/api/auth/token); use it as CONCH_API_KEY."""
    _emit(_run(lambda: _client().token(username, password)))


@app.command()
def chat(model: Optional[str] = typer.Option(None, help="Reserved: the session's model (the gateway default now)."),
         session: Optional[str] = typer.Option(None, help="Session id; a fresh one if omitted.")) -> None:
    """Talk with the model; it remembers the conversation. Type `reset`, `status` or `quit`.
    Ctrl-C stops the answer being written (and its generation), not the program."""
    from .chat_repl import repl

    repl(_client(), session or uuid.uuid4().hex, model)


def main() -> None:
    app()
