"""A commented example config made from a plugin's option schema (`dtm show config`)."""

from __future__ import annotations

import json
from typing import Any


def example_config(plugin: str, description: str, schema: dict[str, Any]) -> str:
    lines = [
        f"# Example config for the {plugin} plugin.",
        *(f"# {line}" for line in description.splitlines() if line),
        '# Options marked (secret) are never stored in plain text; prefer [[ env "NAME" ]].',
        "tools:",
        f"- name: {plugin}",
        "  instanceID: default",
        "  dependsOn: []",
        "  options:",
    ]
    lines += _object(schema, indent=4)
    return "\n".join(lines) + "\n"


def _object(schema: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    required = set(schema.get("required") or [])
    out: list[str] = []
    for name, sub in (schema.get("properties") or {}).items():
        sub = sub if isinstance(sub, dict) else {}
        notes = ["required" if name in required else "optional"]
        if sub.get("type"):
            notes.append(str(sub["type"]))
        if sub.get("x-secret"):
            notes.append("secret")
        if "enum" in sub:
            notes.append("one of " + ", ".join(json.dumps(v) for v in sub["enum"]))
        if "default" in sub:
            notes.append(f"default {json.dumps(sub['default'])}")
        desc = sub.get("description", "")
        out.append(f"{pad}# {desc + ' ' if desc else ''}({'; '.join(notes)})")
        if sub.get("type") == "object" and sub.get("properties"):
            out.append(f"{pad}{name}:")
            out += _object(sub, indent + 2)
        elif (
            sub.get("type") == "array"
            and isinstance(sub.get("items"), dict)
            and sub["items"].get("properties")
        ):
            out.append(f"{pad}{name}:")
            item_lines = _object(sub["items"], indent + 4)
            first = next(i for i, line in enumerate(item_lines) if not line.strip().startswith("#"))
            item_lines[first] = f"{pad}  - " + item_lines[first].strip()
            out += item_lines
        else:
            out.append(f"{pad}{name}: {_sample(name, sub)}")
    return out


def _sample(name: str, sub: dict[str, Any]) -> str:
    if sub.get("x-secret"):
        return f'[[ env "{name.upper()}" ]]'
    if "default" in sub:
        return json.dumps(sub["default"])
    if "enum" in sub:
        return json.dumps(sub["enum"][0])
    kind = sub.get("type")
    samples: dict[str, str] = {
        "string": '""', "integer": "0", "number": "0", "boolean": "false", "array": "[]",
        "object": "{}",
    }  # fmt: skip
    return samples.get(str(kind), '""')
