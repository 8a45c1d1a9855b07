"""Which of kubectl's field paths, templates and columns print only what names an object.

`kubectl get secrets -o jsonpath='{.items[*].metadata.name}'` lists names: it is neither a
read of secret values (the policy) nor output to mask whole (the masker). A jsonpath or
go-template whose every field names an object (its name, namespace, labels, kind, type)
prints no secret; anything else a template names (data, annotations, a function such as
`index` or `base64decode`, a filter on a secret field, a field this cannot read) may.
"""

from __future__ import annotations

import re

# field paths that name an object, never what it holds
_SAFE_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid",
               "metadata.creationTimestamp", "metadata.resourceVersion", "metadata.generation",
               "metadata.labels", "kind", "apiVersion", "type", "immutable")


def is_safe_path(path: str) -> bool:
    """Whether a field path (`.metadata.name`, `{.kind}`) prints only what names an object."""
    field = path.strip().strip("{}").lstrip(".")
    return any(field == p or field.startswith((p + ".", p + "[")) for p in _SAFE_PATHS)


def custom_columns(spec: str) -> list[tuple[str, bool]] | None:
    """(title, prints only what names the object) for each column of a `custom-columns`
    spec (`NAME:.metadata.name,…`); None when it cannot be read."""
    columns: list[tuple[str, bool]] = []
    for part in spec.split(","):
        title, colon, path = part.partition(":")
        if not colon or not title:
            return None
        columns.append((title, is_safe_path(path)))
    return columns or None


# a field reference: `.a.b[*].c`, `.a['b.c']`
_FIELD = re.compile(r"\.(?:[\w-]+|\[[^\]]*\])(?:\.[\w-]+|\[[^\]]*\])*")
# quoted literals (`{"\t"}`, `{{"\n"}}`), removed before fields are read
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|`[^`]*`')
# the words a template may hold besides fields and literals
_JSONPATH_WORDS = frozenset({"range", "end"})
_GO_WORDS = frozenset({"range", "end", "if", "else", "with", "$", "printf", "println", "print"})
# a field a jsonpath filter tests: `[?(@.type=="Opaque")]`
_FILTERED = re.compile(r"@(\.[\w.-]+)")
# a list's elements, before the element's own field
_ITEMS = re.compile(r"^\.items(?:\[[^\]]*\])?")


def names_only(output: str, template: str) -> bool:
    """Whether `-o OUTPUT=TEMPLATE` (jsonpath, go-template) prints only fields that name
    objects, so that its output holds no secret value."""
    if output in ("jsonpath", "jsonpath-as-json"):
        parts, words = re.findall(r"\{([^{}]*)\}", template), _JSONPATH_WORDS
    elif output in ("go-template", "template"):
        parts, words = re.findall(r"\{\{-?([^{}]*?)-?\}\}", template), _GO_WORDS
    else:
        return False
    if not parts:
        return False
    for part in parts:
        rest = _QUOTED.sub(" ", part)
        # a filter that tests a secret field prints names, but tells what the field holds
        if any(not is_safe_path(field) for field in _FILTERED.findall(rest)):
            return False
        for field in _FIELD.findall(rest):
            path = _ITEMS.sub("", field)
            if path and path != "." and not is_safe_path(path):
                return False
        leftover = _FIELD.sub(" ", rest).replace("[*]", " ").split()
        if any(word not in words for word in leftover):
            return False
    return True
