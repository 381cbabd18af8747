"""The API reference page: tvlib's docstrings are plain text, so they are made safe for reST first.

Outside literal blocks, reST's markup characters are escaped and $...$ becomes math; a bullet list gets the blank line reST
needs before it; an indented block after a paragraph becomes a literal block (code examples).
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\|*`])")
_MATH = re.compile(r"\$([^$\s][^$]*?)\$")  # mathtext in a docstring becomes a :math: role
_MARK = "\x00{}\x00"
_TRAILING_UNDERSCORE = re.compile(r"(\w)_(?=\W|$)")  # "x_" would be a hyperlink reference


def _is_bullet(line: str) -> bool:
    return line.lstrip().startswith(("- ", "* ")) and not line.startswith(" ")


def _safe(lines: list[str]) -> list[str]:
    out: list[str] = []
    literal = False
    for i, line in enumerate(lines):
        indented = line.startswith(" ") and line.strip()
        if literal and (indented or not line.strip()):
            out.append(line)
            continue
        literal = False
        if indented and out and not out[-1].strip():
            prev = next((l for l in reversed(out) if l.strip()), "")
            in_list = _is_bullet(prev) or (prev.startswith("  ") and not prev.startswith("    "))
            if not in_list and not prev.startswith(" "):
                j = max(k for k, l in enumerate(out) if l.strip())
                out[j] = out[j] + (":" if out[j].endswith(":") and not out[j].endswith("::") else " ::")
                literal = True
                out.append(line)
                continue
        maths = _MATH.findall(line)
        for k, m in enumerate(maths):
            line = line.replace(f"${m}$", _MARK.format(k), 1)
        text = _TRAILING_UNDERSCORE.sub(r"\1\\_", _SPECIAL.sub(r"\\\1", line))
        for k, m in enumerate(maths):
            text = text.replace(_MARK.format(k), f":math:`{m}`")
        if _is_bullet(line) and out and out[-1].strip() and not _is_bullet(out[-1]) and not out[-1].startswith(" "):
            out.append("")
        out.append(text)
    return out


def _process(app, what, name, obj, options, lines):
    lines[:] = _safe(list(lines))


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True}
