"""The interactive loop behind `conch chat` (seed 002's terminal client, with streaming)."""

from __future__ import annotations

import httpx

from .client import Client
from .errors import ConchError

HELP = "Commands: reset (forget the conversation), status, quit. Ctrl-C stops an answer."


def repl(client: Client, session: str, model: str | None = None) -> None:
    print(f"Conch chat — session {session}. {HELP}", flush=True)
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not line:
            continue
        if line in ("quit", "exit"):
            return
        try:
            if line == "reset":
                client.reset(session)
                print("(conversation reset)", flush=True)
            elif line == "status":
                for key, value in client.status(session).model_dump().items():
                    print(f"{key}: {value}", flush=True)
            else:
                _answer(client, session, line, model)
        except ConchError as error:
            print(f"error: {error}", flush=True)
        except httpx.TransportError as error:
            print(f"error: cannot reach the server: {error}", flush=True)


def _answer(client: Client, session: str, message: str, model: str | None = None) -> None:
    print("bot> ", end="", flush=True)
    stream = client.chat_stream(message, session, model=model)
    try:
        for event in stream:
            print(event.token, end="", flush=True)
        print(flush=True)
    except KeyboardInterrupt:
        stream.close()  # closes the HTTP stream; the gateway cancels the request in Triton
        print("\n(cancelled)", flush=True)
