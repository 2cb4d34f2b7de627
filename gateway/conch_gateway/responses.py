"""JSON responses: orjson for bodies built by hand (errors, health), and pydantic's own
serializer for typed answers (FastAPI would validate them a second time)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def typed_json(answer: BaseModel) -> Response:
    return Response(answer.model_dump_json(), media_type="application/json")
