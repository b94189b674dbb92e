"""A YAML error as a person reads it: the problem and where it is, in the file's own line numbers."""

from __future__ import annotations

import yaml


def describe(exc: yaml.YAMLError, first_line: int = 1) -> str:
    """One line: `line L, column C: problem (while … at line L')`, 1-based as editors count.

    `first_line` is the file line the parsed text started on (a Markdown file's front matter starts
    on its second line, after the opening `---`).
    """
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        return " ".join(str(exc).split())
    problem = " ".join((exc.problem or "").split())
    where = f"line {mark.line + first_line}, column {mark.column + 1}"
    context, since = exc.context, exc.context_mark
    if context and since is not None and since.line != mark.line:
        problem += f" ({context} at line {since.line + first_line})"
    elif context:
        problem = f"{context}: {problem}"
    return f"{where}: {problem}"
