"""Chat templates and scenarios."""

from __future__ import annotations

import pytest

from conch_gateway.errors import ConchError
from conch_gateway.prompts import SCENARIOS, PromptFormat, scenario_messages


def test_chatml_rendering():
    prompt = PromptFormat.for_model("chatml", None).render([{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_llama3_rendering():
    fmt = PromptFormat.for_model("llama3", None)
    prompt = fmt.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi "}])
    assert prompt == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert fmt.stop_tokens == ("<|eot_id|>", "<|eom_id|>")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_puts_the_input_in_a_user_turn(scenario):
    messages = scenario_messages(scenario, "Some {text} with braces")
    assert messages[-1]["role"] == "user"
    assert "Some {text} with braces" in messages[-1]["content"]
    assert all(m["content"] for m in messages)


def test_unknown_scenario():
    with pytest.raises(ConchError) as error:
        scenario_messages("poem", "x")
    assert error.value.code == "PROMPT_FORMAT_FAILED" and error.value.status == 400


@pytest.mark.parametrize("template", [
    "{% for m in messages %}",  # syntax error
    "{{ raise_exception('no system role') }}",
    "{{ messages.__class__.__mro__ }}",  # the sandbox refuses
])
def test_broken_or_unsafe_templates_fail_cleanly(template):
    with pytest.raises(ConchError) as error:
        PromptFormat.for_model("chatml", template).render([{"role": "user", "content": "x"}])
    assert error.value.code == "PROMPT_FORMAT_FAILED"


def test_custom_template_keeps_the_family_stop_tokens():
    fmt = PromptFormat.for_model("chatml", "{{ messages[0]['content'] }}")
    assert fmt.render([{"role": "user", "content": "x"}]) == "x"
    assert fmt.stop_tokens == ("<|im_end|>",)
