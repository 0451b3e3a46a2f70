"""The prompts, rendered from the Jinja2 templates shipped in ``templates/``.

Each template holds the system message, a line ``---- user ----``, then the user message.
Excerpts are the tokens' own text (decoded one id at a time, as the report shows them) with
marked tokens written ``<<token>>``; line breaks and tabs inside an excerpt are written ↵ and ⇥
so that each excerpt stays on its line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import jinja2

from sae_kit.eval.explain.examples import Context

Decode = Callable[[int], str]
SPLIT = "---- user ----"
_FLAT = str.maketrans({"\n": "↵", "\r": "␍", "\t": "⇥"})


def flat(text: str) -> str:
    """One line: line breaks and tabs made visible."""
    return text.translate(_FLAT)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                              autoescape=False, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=False)


def render(name: str, **values: object) -> list[dict[str, str]]:
    """Chat messages (system, user) from template ``name``."""
    text = _environment().get_template(f"{name}.j2").render(**values)
    system, user = text.split(SPLIT, 1)
    return [{"role": "system", "content": system.strip()},
            {"role": "user", "content": user.strip()}]


def excerpt(context: Context, decode: Decode, marked: Sequence[int] = ()) -> str:
    """The span as text, tokens at positions ``marked`` written <<like this>>."""
    marks = set(marked)
    return flat("".join(f"<<{decode(t)}>>" if i in marks else decode(t)
                        for i, t in enumerate(context.tokens) if t >= 0))


def active_positions(context: Context) -> list[int]:
    return [i for i, (t, a) in enumerate(zip(context.tokens, context.acts, strict=True))
            if t >= 0 and a != 0]


def explain_messages(shown: Sequence[Context], decode: Decode) -> list[dict[str, str]]:
    peak = max((c.peak for c in shown), default=0.0) or 1.0
    examples = []
    for c in shown:
        active = active_positions(c)
        acts = ", ".join(f"{flat(decode(c.tokens[i]).strip() or repr(decode(c.tokens[i])))}="
                         f"{round(10 * abs(c.acts[i]) / peak)}" for i in active)
        examples.append({"text": excerpt(c, decode, active), "acts": acts or "none"})
    return render("explain", examples=examples)


def scoring_messages(kind: str, explanation: str, excerpts: Sequence[object]
                     ) -> list[dict[str, str]]:
    return render(kind, explanation=explanation, excerpts=list(excerpts))
