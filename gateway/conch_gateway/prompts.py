"""Prompt rendering: the generate API's scenarios and chat templates.

Every model family is just a Jinja chat template (rendered in a sandbox, as Hugging Face
renders `tokenizer.chat_template`); a Model may carry its own template instead. Triton's
TensorRT-LLM models apply no template, so the gateway always renders one — users never type
`<|im_start|>`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Sequence

from jinja2 import TemplateError

from . import templating
from .errors import prompt_format_failed

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    template: str
    bos_token: str
    eos_token: str
    stop_tokens: tuple[str, ...]  # end-of-turn tokens the backend must also stop on


FAMILIES: dict[str, Family] = {
    "chatml": Family(CHATML, bos_token="", eos_token="<|im_end|>", stop_tokens=("<|im_end|>",)),
    "llama3": Family(LLAMA3, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                     stop_tokens=("<|eot_id|>", "<|eom_id|>")),
}
_BUILTIN_TEMPLATES = frozenset(f.template for f in FAMILIES.values())


@dataclass(frozen=True)
class Scenario:
    system: str | None
    user: str  # "{inputs}" is replaced by the user's text (plain replace: their braces are safe)


_SAME_LANGUAGE = "Always answer in the language of the user's text."

SCENARIOS: dict[str, Scenario] = {
    "base": Scenario(system="You are a helpful assistant.", user="{inputs}"),
    "qa": Scenario(
        system="You are a knowledgeable assistant. Answer the question accurately and concisely. " + _SAME_LANGUAGE,
        user="{inputs}",
    ),
    "summarize": Scenario(
        system="You write faithful, concise summaries that keep the key facts. " + _SAME_LANGUAGE,
        user="Summarize the following text:\n\n{inputs}",
    ),
    "rewrite": Scenario(
        system="You are an editor. Rewrite the text to be clearer and more fluent, keeping its meaning. "
        "Reply with the rewritten text only. " + _SAME_LANGUAGE,
        user="Rewrite the following text:\n\n{inputs}",
    ),
}


@dataclass(frozen=True)
class PromptFormat:
    """How one model wants its prompts: a chat template plus the special tokens it refers to."""

    template: str
    bos_token: str = ""
    eos_token: str = ""
    stop_tokens: tuple[str, ...] = ()
    limits: templating.Limits = templating.Limits()  # the registry sets the gateway's own (settings)

    @classmethod
    def for_model(cls, family: str | None, chat_template: str | None) -> "PromptFormat":
        base = FAMILIES.get(family or "chatml", FAMILIES["chatml"])
        return cls(template=chat_template or base.template, bos_token=base.bos_token,
                   eos_token=base.eos_token, stop_tokens=base.stop_tokens)

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """In the calling thread: for Conch's own templates, and for tests."""
        try:
            context = self._context(messages, add_generation_prompt)
            builtin = _BUILTIN_RENDERERS.get(self.template)
            text = builtin(context) if builtin is not None else None
            if text is None:
                return templating.render_bounded(self.template, context, self.limits.max_chars)
            if len(text) > self.limits.max_chars:
                raise templating.too_long(self.limits.max_chars)
            return text
        except TemplateError as exc:
            raise prompt_format_failed(f"the model's chat template failed to render: {exc}") from exc

    async def render_async(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """What the services call. Conch's own templates render here at once (microseconds); a
        Model's own template — its author's code — renders off the event loop within the time
        and size limits of templating.py."""
        if self.template in _BUILTIN_TEMPLATES:
            return self.render(messages, add_generation_prompt)
        limits = self.limits
        try:
            return await templating.runner().render(self.template, self._context(messages, add_generation_prompt),
                                                    timeout_s=limits.timeout_s, max_chars=limits.max_chars)
        except TemplateError as exc:
            raise prompt_format_failed(f"the model's chat template failed to render: {exc}") from exc

    def _context(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool) -> dict[str, Any]:
        guarded = [{**m, "content": neutralize(m["content"], self._specials)} if isinstance(m.get("content"), str)
                   else m for m in messages]
        return {"messages": guarded, "add_generation_prompt": add_generation_prompt,
                "bos_token": self.bos_token, "eos_token": self.eos_token}

    @functools.cached_property
    def _specials(self) -> tuple[str, ...]:
        return tuple(t for t in (self.bos_token, self.eos_token, *self.stop_tokens) if t)


# Conch's own templates, rendered by plain Python (a Jinja render costs ~40 µs of the hot path's
# CPU): the same text as Jinja renders them, for messages whose role and content are strings —
# anything else (a missing key, content parts) goes to Jinja, which answers it as before.
# tests/unit/gateway/test_prompts_builtin.py holds each to its Jinja rendering.


def _turns(context: dict[str, Any]) -> list[tuple[str, str]] | None:
    turns = []
    for message in context["messages"]:
        if type(message) is not dict:
            return None
        role, content = message.get("role"), message.get("content")
        if type(role) is not str or type(content) is not str:
            return None
        turns.append((role, content))
    return turns


def _render_chatml(context: dict[str, Any]) -> str | None:
    turns = _turns(context)
    if turns is None:
        return None
    text = "".join(["<|im_start|>" + role + "\n" + content + "<|im_end|>" + "\n" for role, content in turns])
    return text + "<|im_start|>assistant\n" if context["add_generation_prompt"] else text


def _render_llama3(context: dict[str, Any]) -> str | None:
    turns = _turns(context)
    bos = context["bos_token"]
    if turns is None or type(bos) is not str:
        return None
    text = bos + "".join(["<|start_header_id|>" + role + "<|end_header_id|>\n\n" + content.strip() + "<|eot_id|>"
                          for role, content in turns])
    return text + "<|start_header_id|>assistant<|end_header_id|>\n\n" if context["add_generation_prompt"] else text


_BUILTIN_RENDERERS = {CHATML: _render_chatml, LLAMA3: _render_llama3}


# Control tokens in the text of a message would become real control tokens once the runtime
# tokenizes the prompt (llama.cpp parses special tokens in it), letting a user close their turn and
# forge a system or assistant one. A zero-width space after the first character keeps the text as
# it reads but makes it ordinary text to the tokenizer: `<|im_start|>` (ChatML, Llama 3, Qwen, Phi
# …) and the model's own bos/eos/stop tokens.
_CONTROL_TOKEN = re.compile(r"<\|[^|<>\s]{1,64}\|>")
_ZWSP = "\u200b"


def neutralize(text: str, specials: tuple[str, ...] = ()) -> str:
    if "<" not in text and not any(s and s[0] in text for s in specials):
        return text
    text = _CONTROL_TOKEN.sub(lambda m: m.group(0)[0] + _ZWSP + m.group(0)[1:], text)
    for token in specials:
        if len(token) > 1 and token in text:
            text = text.replace(token, token[0] + _ZWSP + token[1:])
    return text


def scenario_messages(scenario: str, inputs: str) -> list[dict[str, str]]:
    chosen = SCENARIOS.get(scenario)
    if chosen is None:
        known = ", ".join(SCENARIOS)
        raise prompt_format_failed(f"unknown scenario '{scenario}'; use one of: {known}", param="scenario")
    messages = [{"role": "system", "content": chosen.system}] if chosen.system else []
    messages.append({"role": "user", "content": chosen.user.replace("{inputs}", inputs)})
    return messages
