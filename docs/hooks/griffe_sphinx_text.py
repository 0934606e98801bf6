"""A griffe extension: the Sphinx-isms of tank's docstrings, rendered as Markdown.

mkdocstrings' Sphinx parser reads the ``:param x:`` fields; the prose around them is Markdown.
tank's docstrings are also read with ``help()`` and in editors, so they keep a few
reStructuredText habits, which this turns into their Markdown equivalents before rendering:

- doctest runs (``>>>`` lines and their output) become ``pycon`` code blocks;
- a paragraph ending in ``::`` (the indented block after it is literal) ends in ``:``;
- roles such as :class:`~tank.errors.TankError` become code: ``TankError`` (``~`` keeps the last
  name) or ``tank.errors.TankError``.

Loaded by mkdocs.yml (``extensions:`` of the python handler); the source is never changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|ref):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    if tilde:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(indent + lines[i][len(indent):])
            i += 1
        out.append(f"{indent}```")
    return out


def _literal_markers(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.rstrip().endswith("::") and "`" not in line.rstrip()[-3:]:
            text = line.rstrip()[:-2].rstrip()
            if text:
                out.append(text + ":")
            continue
        out.append(line)
    return out


def markdown(text: str) -> str:
    """``text`` with its doctests fenced, ``::`` markers dropped and roles as code."""
    lines = _literal_markers(_doctests(text.splitlines()))
    return _ROLE.sub(_role, "\n".join(lines))


class SphinxText(griffe.Extension):
    """Rewrites every docstring once, as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring (if it has one)."""
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
