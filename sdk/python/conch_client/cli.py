"""`conch`: serve a model, chat with it, and script the gateway's APIs.

Exit codes: 0 ok · 1 the server refused the request (4xx) · 2 bad usage · 3 cannot reach the server ·
4 the server failed or is overloaded (5xx/429, or the answer timed out) · 5 the server package is not
installed (`serve`).
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Optional

import typer

from .cli_models import apply, logs, models_app
from .cli_output import EXIT_NO_SERVER_PACKAGE, OUTPUTS, client, emit, run, state
from .client import DEFAULT_URL

app = typer.Typer(help="Conch: serve quantized LLMs, chat with them, script the gateway.", no_args_is_help=True)
keys_app = typer.Typer(help="API credentials: exchange a username and password for a bearer token.",
                       no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")


@app.callback()
def _root(url: str = typer.Option(DEFAULT_URL, "--url", envvar="CONCH_URL", help="The gateway's URL."),
          api_key: Optional[str] = typer.Option(None, "--api-key", envvar="CONCH_API_KEY", help="Bearer key."),
          output: str = typer.Option("table", "--output", "-o", help="json | yaml | table")) -> None:
    if output not in OUTPUTS:
        raise typer.BadParameter("--output is json, yaml or table")
    state.update(url=url, api_key=api_key or None, output=output, client=None)


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


@app.command()
def generate(prompt: str, model: Optional[str] = typer.Option(None, help="A model id; the default model if omitted."),
             max_tokens: int = typer.Option(128, help="Most tokens to generate."),
             stream: bool = typer.Option(False, help="Print tokens as they come.")) -> None:
    """Generate text once (/api/v1/generate)."""
    if stream:
        def go() -> None:
            for event in client().generate_stream(prompt, model, max_tokens):
                typer.echo(event.token, nl=False)
            typer.echo()
        run(go)
        return
    result = run(lambda: client().generate(prompt, model, max_tokens))
    typer.echo(result.text) if state["output"] == "table" else emit(result.model_dump())


@keys_app.command("token")
def keys_token(username: str = typer.Option(..., prompt=True, help="Asked for when not given."),
               password: str = typer.Option(..., prompt=True, hide_input=True, envvar="CONCH_PASSWORD",
                                            help="Asked for (hidden) when not given, or read from CONCH_PASSWORD.")) -> None:
    """A bearer token for a username and password (/api/auth/token).

    Use it as CONCH_API_KEY:
    `export CONCH_API_KEY=$(conch -o json keys token --username ada | jq -r .access_token)`."""
    emit(run(lambda: client().token(username, password)))


@app.command()
def chat(model: Optional[str] = typer.Option(None, help="The session's model (chosen by its first message); "
                                             "the gateway's default if omitted."),
         session: Optional[str] = typer.Option(None, help="Session id; a fresh one if omitted.")) -> None:
    """Talk with the model; it remembers the conversation.

    Type `reset`, `status` or `quit`. Ctrl-C stops the answer being written (and its generation),
    not the program."""
    from .chat_repl import repl

    repl(client(), session or uuid.uuid4().hex, model)


app.command()(apply)
app.command()(logs)


def main() -> None:
    app()
