"""MkDocs hook: the configuration reference, generated from the code at every build so that it cannot drift.

``docs/reference/configuration.md`` holds markers, ``<!-- generated: NAME -->``; each is replaced by a section
rendered from the code of the checkout being built (not from an installed pyfly-hydra):

- ``keys``: every key of the structured-config dataclasses in ``pyfly_hydra/config/schema.py``, with its type,
  its default and its description (the comment convention that module's docstring states);
- ``groups``: the config groups under ``conf/``, their options, the default choice and each file's first comment;
- ``tuner``: the keys of ``conf/hydra/sweeper/tune.yaml`` with their trailing comments;
- ``support-matrix`` and ``native-options``: ``pyfly_hydra.info.support_matrix()`` and ``native_option_lines()``,
  the text ``mode=info`` prints.

A key without a description, a marker without a section or a section without its marker fails the build.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import io
import re
import sys
import tokenize
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the checkout's code: a venv's editable install may point at another tree

from pyfly_hydra.config import schema  # noqa: E402

PAGE = "reference/configuration.md"
SCHEMA_FILE = ROOT / "pyfly_hydra" / "config" / "schema.py"
CONF = ROOT / "conf"
MARKER = re.compile(r"<!-- generated: ([\w-]+) -->")
# Comments that are instructions to tools, never a description.
TOOL_COMMENT = re.compile(r"^(noqa|type:|pragma|fmt:)")


class ReferenceError(Exception):
    """What the generator cannot render: the build stops with this message."""


def descriptions(source: str) -> dict[tuple[str, str], str]:
    """``(class name, field name) -> description`` for every annotated field of every class in ``source``.

    A field's description is the comment at the end of its statement's last line or, failing that, the ``#:``
    comment lines directly above the statement, joined.
    """
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whether the comment is the line's only token)
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = (token.string, token.start[0] not in code_lines)
        elif token.type not in {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}:
            code_lines.update(range(token.start[0], token.end[0] + 1))
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                text = _trailing(comments, statement.end_lineno or statement.lineno) or _above(
                    comments, statement.lineno
                )
                if text:
                    found[(node.name, statement.target.id)] = text
    return found


def _trailing(comments: dict[int, tuple[str, bool]], line: int) -> str | None:
    comment = comments.get(line)
    if comment is None or comment[1]:
        return None
    text = comment[0].lstrip("#").strip()
    return None if TOOL_COMMENT.match(text) else text or None


def _above(comments: dict[int, tuple[str, bool]], line: int) -> str | None:
    lines: list[str] = []
    line -= 1
    while line in comments and comments[line][1] and comments[line][0].startswith("#:"):
        lines.insert(0, comments[line][0][2:].strip())
        line -= 1
    return " ".join(lines) or None


@dataclasses.dataclass(frozen=True)
class Key:
    """One row of the reference."""

    name: str
    type: str
    default: str
    description: str


@dataclasses.dataclass(frozen=True)
class Section:
    """The keys under one prefix (``server.granian``), and what the prefix is, from its class's docstring."""

    prefix: str
    doc: str
    keys: tuple[Key, ...]


def sections(root: type, prefix: str, described: dict[tuple[str, str], str]) -> Iterator[Section]:
    """``root``'s own keys as one section, then each nested dataclass's (depth first)."""
    keys: list[Key] = []
    nested: list[tuple[type, str]] = []
    for field in dataclasses.fields(root):
        name = f"{prefix}{field.name}"
        kind = getattr(schema, str(field.type), None)
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            nested.append((kind, f"{name}."))
            continue
        item = re.fullmatch(r"list\[(\w+)\]", str(field.type))
        item_kind = getattr(schema, item.group(1), None) if item else None
        if dataclasses.is_dataclass(item_kind) and isinstance(item_kind, type):
            nested.append((item_kind, f"{name}[]."))
        keys.append(Key(name, str(field.type), _default(field), _description(root, field.name, name, described)))
    doc = (root.__doc__ or "").strip().split("\n\n")[0]
    yield Section(prefix.rstrip("."), " ".join(doc.split()), tuple(keys))
    for kind, nested_prefix in nested:
        yield from sections(kind, nested_prefix, described)


def _description(root: type, field: str, name: str, described: dict[tuple[str, str], str]) -> str:
    for owner in root.__mro__:
        if (owner.__name__, field) in described:
            return described[(owner.__name__, field)]
    raise ReferenceError(
        f"{name}: no description in pyfly_hydra/config/schema.py; write one as the comment on its line "
        "(or as #: lines above it)"
    )


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value: Any = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return MISSING
    return MISSING if value == MISSING else show(value)  # ???: no default, as OmegaConf writes it


def show(value: Any) -> str:
    """A value as it is written on the command line or in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {show(item)}" for key, item in value.items()) + "}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        set_fields = {
            field.name: getattr(value, field.name)
            for field in dataclasses.fields(value)
            if getattr(value, field.name) != _value_of(field)
        }
        return show(set_fields)
    return str(value)


def _value_of(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _cell(text: str) -> str:
    """Plain text in a table cell: no HTML, and a pipe is not a column separator."""
    return html.escape(text, quote=False).replace("|", "\\|")


def _code(text: str) -> str:
    """A code span in a table cell (a pipe inside one is no column separator)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render_keys() -> str:
    """Every key of the schema: the top-level ones, then ``server.*``, ``loop.*`` and ``bench.*``."""
    described = descriptions(SCHEMA_FILE.read_text())
    out: list[str] = []
    for section in sections(schema.Config, "", described):
        title = f"`{section.prefix}.*`" if section.prefix else "Top-level keys"
        out += [f"### {title}", "", section.doc, "", "| key | type | default | description |", "|---|---|---|---|"]
        out += [
            f"| {_code(key.name)} | {_code(key.type)} | {_code(key.default)} | {_cell(key.description)} |"
            for key in section.keys
        ]
        out.append("")
    return "\n".join(out)


def _first_comment(path: Path) -> str:
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def render_groups() -> str:
    """The config groups under ``conf/``: each option with its file's first comment, and the default choice."""
    defaults: dict[str, str | None] = {}
    for entry in OmegaConf.to_container(OmegaConf.load(CONF / "config.yaml"))["defaults"]:  # type: ignore[index]
        if isinstance(entry, dict):
            ((group, choice),) = entry.items()
            defaults[group] = choice
    out = ["| group | option | default | what it is |", "|---|---|---|---|"]
    groups = sorted({path.parent.relative_to(CONF).as_posix() for path in CONF.rglob("*.yaml")} - {"."})
    for group in groups:
        for path in sorted((CONF / group).glob("*.yaml")):
            default = defaults.get(group)
            mark = "default" if path.stem == default else ""
            out.append(f"| `{group}` | `{path.stem}` | {mark} | {_cell(_first_comment(path))} |")
    none = sorted(group for group, choice in defaults.items() if choice is None)
    out += ["", "Chosen by nothing unless named: " + ", ".join(f"`{group}`" for group in none) + "."]
    return "\n".join(out)


TUNER_KEY = re.compile(r"^(\w+):\s*(.*?)\s+#\s*(.+)$")


def render_tuner() -> str:
    """``hydra.sweeper.*`` under ``hydra/sweeper=tune``, from the keys and comments of its config file."""
    out = ["| key | default | description |", "|---|---|---|"]
    for line in (CONF / "hydra" / "sweeper" / "tune.yaml").read_text().splitlines():
        match = TUNER_KEY.match(line)
        if match and match.group(1) != "_target_":
            key, value, comment = match.groups()
            out.append(f"| `hydra.sweeper.{key}` | {_code(value)} | {_cell(comment)} |")
    if len(out) == 2:
        raise ReferenceError("conf/hydra/sweeper/tune.yaml: no 'key: value  # description' line found")
    return "\n".join(out)


def _text_block(lines: list[str]) -> str:
    return "\n".join(["```text", *lines, "```"])


def render_support_matrix() -> str:
    from pyfly_hydra.info import support_matrix

    return _text_block(support_matrix())


def render_native_options() -> str:
    from pyfly_hydra.info import native_option_lines

    return _text_block(native_option_lines())


SECTIONS: dict[str, Callable[[], str]] = {
    "keys": render_keys,
    "groups": render_groups,
    "tuner": render_tuner,
    "support-matrix": render_support_matrix,
    "native-options": render_native_options,
}


def render_page(markdown: str) -> str:
    """``markdown`` with every marker replaced by its section."""
    named = MARKER.findall(markdown)
    unknown = sorted(set(named) - set(SECTIONS))
    unused = sorted(set(SECTIONS) - set(named))
    if unknown or unused:
        raise ReferenceError(f"{PAGE}: markers without a section {unknown}, sections without a marker {unused}")
    return MARKER.sub(lambda match: SECTIONS[match.group(1)](), markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs' hook: the reference page gets its generated sections; every other page is left as it is."""
    if page.file.src_uri != PAGE:
        return markdown
    try:
        return render_page(markdown)
    except ReferenceError as error:
        from mkdocs.exceptions import PluginError

        raise PluginError(str(error)) from error
