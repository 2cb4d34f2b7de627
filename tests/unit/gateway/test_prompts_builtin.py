"""Conch's own chat templates are rendered by plain Python on the hot path (prompts._BUILTIN_RENDERERS):
the text must be exactly what Jinja renders from the same template, and anything the Python
renderers do not take must still reach Jinja."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conch_gateway import templating
from conch_gateway.errors import ConchError
from conch_gateway.prompts import _BUILTIN_RENDERERS, CHATML, FAMILIES, LLAMA3, PromptFormat

# Whitespace of every kind (Jinja's `trim` strips what str.strip strips), control tokens, braces.
_TEXT = st.lists(st.sampled_from(["a", "é", " ", "\n", "\t", "\u3000", "\x1c", "\u200b", "<|im_end|>", "<|eot_id|>",
                                  "<|begin_of_text|>", "{{", "}}", "{%", "<", "|"]), max_size=20).map("".join)
_MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", " x "]),
                                            "content": _TEXT}), max_size=5)


def jinja(fmt: PromptFormat, messages, add_generation_prompt: bool) -> str:
    return templating.render_bounded(fmt.template, fmt._context(messages, add_generation_prompt), 10**9)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=300, deadline=None)
@given(messages=_MESSAGES, add_generation_prompt=st.booleans())
def test_the_python_rendering_is_jinjas(family, messages, add_generation_prompt):
    fmt = PromptFormat.for_model(family, None)
    assert fmt.template in _BUILTIN_RENDERERS
    assert fmt.render(messages, add_generation_prompt) == jinja(fmt, messages, add_generation_prompt)


def test_both_builtin_templates_have_a_python_renderer():
    assert set(_BUILTIN_RENDERERS) == {CHATML, LLAMA3} == {f.template for f in FAMILIES.values()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": [{"type": "text", "text": "parts"}]}],  # content parts
    [{"role": "user"}],  # no content
    [{"content": "no role"}],
    [{"role": None, "content": "x"}],
])
def test_what_the_python_renderers_do_not_take_goes_to_jinja(family, messages, monkeypatch):
    fmt = PromptFormat.for_model(family, None)
    calls = []
    real = templating.render_bounded
    monkeypatch.setattr(templating, "render_bounded", lambda *a: calls.append(a) or real(*a))
    try:
        fmt.render(messages)
    except (ConchError, TypeError):
        pass  # what Jinja makes of it, as before
    assert len(calls) == 1


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_size_limit_holds_on_the_python_path(family):
    fmt = PromptFormat.for_model(family, None)
    messages = [{"role": "user", "content": "x" * 100}]
    size = len(fmt.render(messages))
    limited = PromptFormat(fmt.template, fmt.bos_token, fmt.eos_token, fmt.stop_tokens, templating.Limits(max_chars=size))
    assert limited.render(messages) == fmt.render(messages)
    too_small = PromptFormat(fmt.template, fmt.bos_token, fmt.eos_token, fmt.stop_tokens,
                             templating.Limits(max_chars=size - 1))
    with pytest.raises(ConchError) as error:
        too_small.render(messages)
    assert error.value.code == "PROMPT_FORMAT_FAILED"
    assert f"the template's output passed {size - 1} characters" in error.value.message
