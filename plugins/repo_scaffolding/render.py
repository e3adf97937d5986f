"""Rendering a template repository: `[[ .Name ]]` placeholders in file contents and paths.

DevStream renders templates with Go's text/template and the delimiters `[[ ]]` (so the
`{{ }}` of Helm charts and GitHub workflows inside a template pass through untouched). This
is the subset templates use: field references `[[ .Name ]]`, dotted paths `[[ .Repo.Name ]]`
and the trim markers `[[- ` and ` -]]`. Anything else between `[[ ]]` is left as written,
because template files legitimately hold such text: a pyproject.toml's
`[[tool.mypy.overrides]]` or a Bash `[[ -f x ]]` test must survive rendering, where Go would
fail to parse them.

A file whose first 8000 bytes hold a NUL byte, or that is not UTF-8, is binary (git's own
test) and is copied as it is; its name is still rendered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from plugin_sdk import InvalidOptions
from plugins._scm.git import File

# [[ .A.B ]], [[- .A -]], [[.A]]: Go requires a space between a trim dash and the field.
ACTION = re.compile(
    r"\[\[(?:(?P<ltrim>-)\s+|\s*)"
    r"(?P<field>\.[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
    r"(?:\s+(?P<rtrim>-)|\s*)\]\]"
)
BINARY_SNIFF = 8000


def is_binary(data: bytes) -> bool:
    if b"\0" in data[:BINARY_SNIFF]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _lookup(variables: Mapping[str, Any], field: str, where: str) -> Any:
    value: Any = variables
    walked = ""
    for part in field.lstrip(".").split("."):
        if not isinstance(value, Mapping) or part not in value:
            known = sorted(value) if isinstance(value, Mapping) else []
            hint = f"; known here: {', '.join(known)}" if known else ""
            raise InvalidOptions(
                f"{where}: the template uses [[ {field} ]] but vars has no "
                f"{(walked + '.' + part).lstrip('.')!r}{hint}. Add it under `vars`"
            )
        value = value[part]
        walked = f"{walked}.{part}"
    return value


def _format(value: Any) -> str:
    # As Go's text/template prints scalars (true, not True); structures as JSON, which is
    # what someone putting a map into a config file wants.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)


def render_text(text: str, variables: Mapping[str, Any], where: str) -> str:
    """Replace every placeholder in `text`; `where` names the file in error messages."""
    out: list[str] = []
    pos = 0
    trim_next = False
    for match in ACTION.finditer(text):
        before = text[pos : match.start()]
        if trim_next:
            before = before.lstrip(" \t\r\n")
        if match.group("ltrim"):
            before = before.rstrip(" \t\r\n")
        out.append(before)
        out.append(_format(_lookup(variables, match.group("field"), where)))
        trim_next = bool(match.group("rtrim"))
        pos = match.end()
    rest = text[pos:]
    out.append(rest.lstrip(" \t\r\n") if trim_next else rest)
    return "".join(out)


def render_path(name: str, variables: Mapping[str, Any]) -> str:
    """Render each component of a template path, refusing results that escape the repo."""
    parts = []
    for part in name.split("/"):
        rendered = render_text(part, variables, f"the name {name!r}")
        if rendered in ("", ".", "..") or "/" in rendered or "\0" in rendered:
            raise InvalidOptions(
                f"the template path {name!r} renders to {rendered!r} in one of its parts; "
                "a file or directory name must be non-empty and hold no /"
            )
        parts.append(rendered)
    result = "/".join(parts)
    if result == ".git" or result.startswith(".git/"):
        raise InvalidOptions(f"the template path {name!r} renders into .git/, which is git's own")
    return result


def render_tree(files: Mapping[str, File], variables: Mapping[str, Any]) -> dict[str, File]:
    """Render every file's path and (unless binary) content."""
    out: dict[str, File] = {}
    origin: dict[str, str] = {}
    for name in sorted(files):
        file = files[name]
        target = render_path(name, variables)
        if target in origin:
            raise InvalidOptions(
                f"the template paths {origin[target]!r} and {name!r} both render to {target!r}"
            )
        origin[target] = name
        if is_binary(file.data):
            out[target] = file
        else:
            text = render_text(file.data.decode("utf-8"), variables, name)
            out[target] = File(text.encode("utf-8"), executable=file.executable)
    return out
