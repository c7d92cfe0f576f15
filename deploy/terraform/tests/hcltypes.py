"""Terraform type constraints and values as python-hcl2 parses them, and a checker of values against types.

python-hcl2 (8.x) keeps the quotes of string literals ('"chorus"') and gives expressions as "${...}", including a
variable's `type` ("${list(object({name = string, ...}))}"). `parse_type` reads such a type expression;
`check` compares a value with it the way a reviewer would: an object may only have the attributes its type
declares (Terraform drops unknown ones silently, which hides a misspelt key), every attribute that is not
optional() must be there, and a number, a string and a bool are not interchangeable.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

META_KEYS = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}


def unquote(s: Any) -> Any:
    """'"text"' -> 'text' (HCL escapes decoded); other values unchanged."""
    if isinstance(s, str) and len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return s[1:-1]
    return s


def plain(v: Any) -> Any:
    """A python-hcl2 value as plain Python: strings unquoted, bookkeeping keys dropped."""
    if isinstance(v, dict):
        return {unquote(k): plain(x) for k, x in v.items() if k not in META_KEYS}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return unquote(v)


def load(path: Path) -> dict:
    return hcl2.load(io.StringIO(path.read_text()))


def load_dir(directory: Path) -> dict:
    """Every *.tf file of a configuration, merged (blocks of the same type concatenated)."""
    merged: dict[str, list] = {}
    for f in sorted(directory.glob("*.tf")):
        for k, v in load(f).items():
            merged.setdefault(k, []).extend(v if isinstance(v, list) else [v])
    return merged


def blocks(parsed: dict, kind: str) -> dict[str, dict]:
    """Labelled blocks (`variable "x" {...}`, `module "y" {...}`) by label."""
    out = {}
    for item in parsed.get(kind, []):
        for label, body in item.items():
            out[unquote(label)] = body
    return out


def expression(s: str) -> str:
    """'${list(string)}' -> 'list(string)'."""
    m = re.fullmatch(r"\$\{(.*)\}", s, re.S)
    return m.group(1) if m else s


# --- type expressions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class T:
    kind: str  # string number bool any list set map tuple object
    elem: "T | None" = None
    attrs: tuple = ()  # object: ((name, T, optional), ...)
    items: tuple = ()  # tuple: (T, ...)

    def attr_map(self) -> dict[str, tuple["T", bool]]:
        return {n: (t, o) for n, t, o in self.attrs}


TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_-]*)|(?P<p>[(){}\[\],=:]))')


def tokenize(s: str) -> list[str]:
    out, pos = [], 0
    s = s.strip()
    while pos < len(s):
        m = TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read type expression at {s[pos:pos + 30]!r}")
        out.append(m.group(m.lastgroup))
        pos = m.end()
        while pos < len(s) and s[pos].isspace():
            pos += 1
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ValueError(f"expected {want!r}, found {tok!r} in {' '.join(self.toks)}")
        self.i += 1
        return tok

    def type(self) -> T:
        name = self.take()
        if name in ("string", "number", "bool", "any"):
            return T(name)
        if name in ("list", "set", "map"):
            self.take("(")
            elem = self.type()
            self.take(")")
            return T(name, elem=elem)
        if name == "tuple":
            self.take("(")
            self.take("[")
            items = []
            while self.peek() != "]":
                items.append(self.type())
                if self.peek() == ",":
                    self.take(",")
            self.take("]")
            self.take(")")
            return T("tuple", items=tuple(items))
        if name == "object":
            self.take("(")
            self.take("{")
            attrs = []
            while self.peek() != "}":
                attr = unquote(self.take())
                self.take("=")
                optional = self.peek() == "optional"
                if optional:
                    self.take("optional")
                    self.take("(")
                    t = self.type()
                    if self.peek() == ",":
                        self.take(",")
                        self.literal()  # the default: its type is the attribute's
                    self.take(")")
                else:
                    t = self.type()
                attrs.append((attr, t, optional))
                if self.peek() == ",":
                    self.take(",")
            self.take("}")
            self.take(")")
            return T("object", attrs=tuple(attrs))
        raise ValueError(f"unknown type {name!r}")

    def literal(self) -> None:
        tok = self.take()
        if tok in ("{", "["):
            close = "}" if tok == "{" else "]"
            depth = 1
            while depth:
                t = self.take()
                if t in ("{", "["):
                    depth += 1
                elif t in ("}", "]"):
                    depth -= 1
            assert t == close


def parse_type(text: str) -> T:
    p = _Parser(expression(text))
    t = p.type()
    if p.peek() is not None:
        raise ValueError(f"trailing tokens in type {text!r}")
    return t


# --- values --------------------------------------------------------------------------------------------------------


@dataclass
class Problems:
    items: list[str] = field(default_factory=list)

    def add(self, path: str, msg: str) -> None:
        self.items.append(f"{path}: {msg}")


def check(value: Any, t: T, path: str = "value", problems: Problems | None = None) -> list[str]:
    """Problems of a plain value (see `plain`) against a type; empty when it matches."""
    p = problems if problems is not None else Problems()
    k = t.kind
    if k == "any":
        pass
    elif k == "string":
        if not isinstance(value, str):
            p.add(path, f"a string is expected, not {value!r}")
    elif k == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            p.add(path, f"a number is expected, not {value!r}")
    elif k == "bool":
        if not isinstance(value, bool):
            p.add(path, f"a bool is expected, not {value!r}")
    elif k in ("list", "set"):
        if not isinstance(value, list):
            p.add(path, f"a list is expected, not {value!r}")
        else:
            for i, v in enumerate(value):
                check(v, t.elem, f"{path}[{i}]", p)
    elif k == "tuple":
        if not isinstance(value, list) or len(value) != len(t.items):
            p.add(path, f"a tuple of {len(t.items)} is expected, not {value!r}")
        else:
            for i, (v, it) in enumerate(zip(value, t.items)):
                check(v, it, f"{path}[{i}]", p)
    elif k == "map":
        if not isinstance(value, dict):
            p.add(path, f"a map is expected, not {value!r}")
        else:
            for key, v in value.items():
                check(v, t.elem, f"{path}[{key!r}]", p)
    elif k == "object":
        if not isinstance(value, dict):
            p.add(path, f"an object is expected, not {value!r}")
        else:
            attrs = t.attr_map()
            for key in value:
                if key not in attrs:
                    p.add(f"{path}.{key}", f"not an attribute of the type (it has {', '.join(attrs)})")
            for name, (at, optional) in attrs.items():
                if name in value:
                    check(value[name], at, f"{path}.{name}", p)
                elif not optional:
                    p.add(f"{path}.{name}", "missing (not optional)")
    return p.items


def variables(directory_or_file: Path) -> dict[str, dict]:
    """Variable blocks of a configuration (directory) or one file, by name, as plain values (type kept raw)."""
    parsed = load_dir(directory_or_file) if directory_or_file.is_dir() else load(directory_or_file)
    out = {}
    for name, body in blocks(parsed, "variable").items():
        v = {key: val for key, val in body.items() if key not in META_KEYS}
        out[name] = {
            "type": v.get("type"),
            "description": unquote(v.get("description")),
            "has_default": "default" in v,
            "default": plain(v.get("default")),
            "sensitive": v.get("sensitive", False),
            "validations": [plain(x) for x in v.get("validation", [])],
        }
    return out
