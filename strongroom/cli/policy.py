"""``policy``: write, read, list, delete and fmt ACL policies (HCL or JSON)."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click

from strongroom.api.client import data_of
from strongroom.cli import output as out

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_PATH_LABEL = re.compile(r'^\s*path\s+"((?:[^"\\]|\\.)*)"', re.MULTILINE)


@click.group(cls=out.Group)
def policy() -> None:
    """Manage ACL policies."""


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        with open(source, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        out.fail(f"Error opening policy file: {exc}")


@policy.command()
@click.argument("name")
@click.argument("source")
@out.api_options
def write(name: str, source: str) -> None:
    """Upload the policy in SOURCE (a file, or ``-`` for stdin) as NAME."""
    name = name.strip().lower()
    rules = _read_source(source)
    client = out.client_from()
    with out.api_errors("uploading policy"):
        client.sys.write_policy(name, rules)
    out.success(f"Uploaded policy: {name}")


@policy.command()
@click.argument("name")
@out.api_options
def read(name: str) -> None:
    """Print the rules of policy NAME."""
    name = name.strip().lower()
    client = out.client_from()
    with out.api_errors(f"reading policy named {name}"):
        secret = client.sys.read_policy(name)
    data = data_of(secret)
    if secret is None or not data:
        out.fail(f"No policy named: {name}", 2)
    rules = str(data.get("policy", data.get("rules", "")))
    s = out.settings()
    if s.field or s.format != "table":
        out.print_data({"name": data.get("name", name), "policy": rules}, s)
    else:
        click.echo(rules.strip())


@policy.command("list")
@out.api_options
def list_() -> None:
    """List policy names."""
    client = out.client_from()
    with out.api_errors("listing policies"):
        names = client.sys.list_policies()
    s = out.settings()
    if s.format != "table":
        click.echo(out.dump(names, s.format))
    else:
        for name in names:
            click.echo(name)


@policy.command()
@click.argument("name")
@out.api_options
def delete(name: str) -> None:
    """Delete policy NAME."""
    name = name.strip().lower()
    client = out.client_from()
    with out.api_errors(f"deleting {name}"):
        client.sys.delete_policy(name)
    out.success(f"Deleted policy: {name}")


@policy.command()
@click.argument("path")
def fmt(path: str) -> None:
    """Parse the HCL policy in PATH and rewrite it in a normalised layout (comments are dropped)."""
    import hcl  # pyhcl ships no type hints; imported here as only fmt needs it

    text = _read_source(path)
    labels = _PATH_LABEL.findall(text)
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        # pyhcl keeps only the last of repeated blocks; rewriting would drop rules.
        out.fail(
            f'Failed to format policy: path "{duplicates[0]}" is declared more than once; merge the blocks'
        )
    try:
        parsed = hcl.loads(text)
    except Exception as exc:  # pyhcl raises plain ValueError subclasses and lexer errors
        out.fail(f"Failed to parse policy: {exc}")
    if not isinstance(parsed, dict):
        out.fail("Failed to parse policy: expected a set of blocks")
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(format_hcl(parsed))
    except OSError as exc:
        out.fail(f"Error writing policy file: {exc}")
    out.success(f"Formatted policy: {path}")


def format_hcl(doc: dict[str, Any]) -> str:
    """Render a parsed policy: top-level maps of maps become labelled blocks
    (``path "secret/*" { ... }``), everything inside them attributes."""
    chunks: list[str] = []
    for key, value in doc.items():
        blocks = _as_blocks(value)
        if blocks is None:
            chunks.append(_attribute(key, value, 0))
        else:
            chunks.extend(
                f"{_key(key)} {json.dumps(label)} {{\n{_body(body, 1)}}}\n" for label, body in blocks
            )
    return "\n".join(chunks)


def _as_blocks(value: Any) -> list[tuple[str, dict[str, Any]]] | None:
    """pyhcl gives ``{label: body}`` for labelled blocks, ``{label: [body, ...]}`` when a label repeats."""
    if not isinstance(value, dict) or not value:
        return None
    blocks: list[tuple[str, dict[str, Any]]] = []
    for label, body in value.items():
        items = body if isinstance(body, list) else [body]
        if not items or not all(isinstance(item, dict) for item in items):
            return None
        blocks.extend((str(label), item) for item in items)
    return blocks


def _key(key: str) -> str:
    return key if _IDENT.match(key) else json.dumps(key)


def _body(body: dict[str, Any], depth: int) -> str:
    return "".join(_attribute(k, v, depth) for k, v in body.items())


def _attribute(key: str, value: Any, depth: int) -> str:
    indent = "  " * depth
    return f"{indent}{_key(key)} = {_value(value, depth)}\n"


def _value(value: Any, depth: int) -> str:
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{\n" + _body(value, depth + 1) + "  " * depth + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v, depth) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))
