"""Prompt rendering: the generate API's scenarios and chat templates.

Every model family is just a Jinja chat template (rendered in a sandbox, as Hugging Face
renders `tokenizer.chat_template`); a Model may carry its own template instead. Triton's
TensorRT-LLM models apply no template, so the gateway always renders one — users never type
`<|im_start|>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

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

    @classmethod
    def for_model(cls, family: str | None, chat_template: str | None) -> "PromptFormat":
        base = FAMILIES.get(family or "chatml", FAMILIES["chatml"])
        return cls(template=chat_template or base.template, bos_token=base.bos_token,
                   eos_token=base.eos_token, stop_tokens=base.stop_tokens)

    def render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        try:
            return _compiled(self.template).render(
                messages=list(messages), add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token,
            )
        except TemplateError as exc:
            raise prompt_format_failed(f"the model's chat template failed to render: {exc}") from exc


def scenario_messages(scenario: str, inputs: str) -> list[dict[str, str]]:
    chosen = SCENARIOS.get(scenario)
    if chosen is None:
        known = ", ".join(SCENARIOS)
        raise prompt_format_failed(f"unknown scenario '{scenario}'; use one of: {known}", param="scenario")
    messages = [{"role": "system", "content": chosen.system}] if chosen.system else []
    messages.append({"role": "user", "content": chosen.user.replace("{inputs}", inputs)})
    return messages


def _raise_exception(message: str):
    raise TemplateError(message)


@lru_cache(maxsize=64)
def _compiled(source: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise prompt_format_failed(f"the model's chat template is not valid Jinja: {exc}") from exc
