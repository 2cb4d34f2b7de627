"""What every `conch` command shares: the chosen server and output format, printing a result as
json | yaml | table, and turning failures into the documented exit codes."""

from __future__ import annotations

import json
from typing import Any, Callable, TypeVar

import httpx
import typer
import yaml

from .client import Client
from .errors import ConchError

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_SERVER, EXIT_NO_SERVER_PACKAGE = 1, 2, 3, 4, 5
OUTPUTS = ("json", "yaml", "table")
# Table columns, in this order, when the rows have them (ids first, then what a script checks).
COLUMNS = ("id", "action", "status", "health", "framework", "owned_by", "message")

state: dict[str, Any] = {"url": None, "api_key": None, "output": "table"}
T = TypeVar("T")


def client() -> Client:
    # One retry: a script should not hang for minutes, but a single 429/503 with Retry-After is
    # worth waiting out once. One client per process (the process is short; the OS closes it).
    if state.get("client") is None:
        state["client"] = Client(state["url"], state["api_key"], max_retries=1)
    return state["client"]


def _cell(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def emit(data: Any) -> None:
    output = state["output"]
    if output == "json":
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif output == "yaml":
        typer.echo(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).rstrip())
    elif isinstance(data, list) and all(isinstance(row, dict) for row in data):
        if not data:
            return
        columns = [c for c in COLUMNS if any(c in row for row in data)] or list(data[0])[:5]
        typer.echo("\t".join(c.upper() for c in columns))
        for row in data:
            typer.echo("\t".join(_cell(row.get(c, "")) for c in columns))
    elif isinstance(data, dict):
        for key, value in data.items():
            typer.echo(f"{key}: {_cell(value)}")
    else:
        typer.echo(data)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def run(call: Callable[[], T]) -> T:
    """Runs one request; a failure exits with its documented code and the server's own message."""
    try:
        return call()
    except ConchError as error:
        raise fail(str(error), EXIT_SERVER if error.status >= 500 or error.status == 429 else EXIT_REFUSED)
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        raise fail(f"cannot reach {state['url']}: {error}", EXIT_UNREACHABLE)
    except httpx.TransportError as error:  # reached, but the answer timed out or broke off: the server's side
        raise fail(f"the request to {state['url']} failed: {type(error).__name__}: {error}", EXIT_SERVER)
