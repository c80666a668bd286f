"""The one Jinja2 environment for every file the program renders (nginx.conf, host shell scripts).

Templates live in ./templates and are strict: an undefined name is an error, not an empty string.
Block tags take their whole line (trim_blocks, lstrip_blocks), so a template reads like the file it
renders. Shell templates pass every interpolated value through `shquote` (one word) or `shjoin`
(a list of words), so no value is ever parsed by the shell as code.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import Path

import jinja2


def shquote(value: object) -> str:
    """One shell word that expands to exactly `value` (`shlex.quote` of its text)."""
    return shlex.quote(str(value))


def double_quoted(text: str) -> str:
    """`text` in double quotes with `\\` and `"` escaped: a string as HOCON (EMQX's environment
    values), Erlang terms (the ACL file) and curl's config file (`-K`) all read it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shjoin(values: Iterable[object]) -> str:
    """Shell words, one per value, separated by spaces."""
    return " ".join(shquote(value) for value in values)


TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
TEMPLATES.filters["shquote"] = shquote
TEMPLATES.filters["shjoin"] = shjoin


def render(template: str, **values: object) -> str:
    """Render templates/<template> with `values`."""
    return TEMPLATES.get_template(template).render(**values)
