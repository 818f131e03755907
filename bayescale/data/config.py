"""JSON and TOML read from files and saved fits, with bounded nesting and size.

``'[' * 100000`` makes Python's parsers recurse until a RecursionError; a file that
nests deeper than any bayescale configuration is refused as invalid instead.
"""

from __future__ import annotations

import json
from typing import Any

#: Deepest nesting of lists and tables accepted (bayescale's own configurations nest 3 deep).
MAX_DEPTH = 32
#: Longest text accepted, in characters (a saved fit's attrs and config files are kilobytes).
MAX_CHARS = 10_000_000


def parse_config(text: str, kind: str = "json") -> Any:
    """Parse ``text`` as JSON or TOML (``kind``), refusing nesting past :data:`MAX_DEPTH`.

    Raises
    ------
    ValueError
        Invalid text (``json.JSONDecodeError`` and ``tomllib.TOMLDecodeError`` are ValueErrors),
        text longer than :data:`MAX_CHARS` or nested too deeply.
    """
    if len(text) > MAX_CHARS:
        raise ValueError(f"{len(text)} characters, more than the {MAX_CHARS} accepted")
    try:
        if kind == "toml":
            import tomllib

            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
    if _depth(data) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return data


def _depth(data: Any) -> int:
    """Nesting depth of lists and dicts, walked without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((item, level + 1) for item in value)
    return deepest
