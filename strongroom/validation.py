"""What a name and an id may contain, decided once, and JSON-schema errors told without echoing secrets.

Every name and id that enters Strongroom from outside (a request body, a path parameter, a query
filter, a plugin parameter, a file name a block backend turns into a volume) is checked against one of
the :class:`Rule` kinds below, either through the JSON-schema fragment :func:`string` (its ``pattern``
and ``format``) or with :func:`check`:

* ``name``: printable text, one line: no control character (C0, DEL, C1, so no NUL, newline or ESC),
  no bidirectional override, embedding, isolate or mark (U+202A-U+202E, U+2066-U+2069, U+200E,
  U+200F, U+061C), no line or paragraph separator, no lone surrogate;
* ``text``: a name that may also hold tabs and line breaks (descriptions);
* ``id``: letters, digits and ``_ . : @ + -``, not ``.`` or ``..`` (so never a path);
* ``segment``: a name that can be one segment of a key or path: no ``/``, not ``.`` or ``..``
  (the ids of other systems' resources, e.g. a volume named by its file);
* ``file-name``: a segment that a backend may create as a file: not starting with ``.`` or ``-``,
  at most 200 bytes of UTF-8 (a restore's ``restore_name``, a loopback volume's name).

Messages name the field and the rule and, for a bad character, its code point and position: never
the value itself.  :func:`describe` does the same for any JSON-schema error under a field that may
hold a secret (``restore_auth``, a password, a token, a key): the 400 says what rule was broken, not
what was sent.  This module imports nothing of Strongroom but its exceptions, so every layer uses it.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Sequence
from typing import Any

import jsonschema
from jsonschema import exceptions as js_exceptions

from strongroom import exceptions

#: Lone surrogates: a JSON ``\uD800`` escape decodes to one, UTF-8 cannot carry one.  Patterns published to
#: other tools (the OpenAPI document) leave this range out: most regex engines cannot even spell it.
SURROGATES = r"\ud800-\udfff"
# Characters no name holds: C0 controls, DEL and C1, bidi controls, line/paragraph separators, surrogates.
_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069" + SURROGATES
_FORBIDDEN_IN_TEXT = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e" \
                     r"\u2066-\u2069" + SURROGATES
_BAD_CHAR = re.compile(f"[{_FORBIDDEN}]")
_BAD_TEXT_CHAR = re.compile(f"[{_FORBIDDEN_IN_TEXT}]")
_ID_CHARS = "A-Za-z0-9_.:@+-"
_NOT_DOTS = r"(?!\.\.?$)"
_NOT_ID_CHAR = re.compile(f"[^{_ID_CHARS}]")


class Rule(enum.Enum):
    NAME = "name"
    TEXT = "text"
    ID = "id"
    SEGMENT = "segment"
    FILE_NAME = "file-name"


@dataclasses.dataclass(frozen=True)
class _Spec:
    pattern: str  # a JSON-schema (ECMA and Python) regex for the whole value
    max_length: int
    says: str  # the rule, as a message says it
    max_bytes: int | None = None


_SPECS: dict[Rule, _Spec] = {
    Rule.NAME: _Spec(f"^[^{_FORBIDDEN}]*$", 255,
                     "must be printable text without control or bidirectional-override characters"),
    Rule.TEXT: _Spec(f"^[^{_FORBIDDEN_IN_TEXT}]*$", 1023,
                     "must be printable text without control (other than tab and line breaks) or "
                     "bidirectional-override characters"),
    Rule.ID: _Spec(f"^{_NOT_DOTS}[{_ID_CHARS}]+$", 255,
                   "must be an id of letters, digits and '_.:@+-' (not '.' or '..')"),
    Rule.SEGMENT: _Spec(f"^{_NOT_DOTS}[^/{_FORBIDDEN}]+$", 255,
                        "must be printable text without '/' or control or bidirectional-override "
                        "characters, and not '.' or '..'"),
    Rule.FILE_NAME: _Spec(f"^(?![.-])[^/{_FORBIDDEN}]+$", 200,
                          "must be a file name: printable text without '/' or control or "
                          "bidirectional-override characters, not starting with '.' or '-'", max_bytes=200),
}
_COMPILED = {rule: re.compile(spec.pattern) for rule, spec in _SPECS.items()}

#: Words that make a field (or anything below it) a holder of secrets: its value is never quoted.
_SECRET_WORDS = frozenset({"password", "passwd", "secret", "token", "key", "credential", "credentials",
                           "auth", "passphrase"})


def problem(value: Any, rule: Rule, *, min_length: int = 1, max_length: int | None = None) -> str | None:
    """What is wrong with ``value`` under ``rule`` (never quoting it), or None when it is acceptable."""
    spec = _SPECS[rule]
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    limit = spec.max_length if max_length is None else max_length
    if len(value) < min_length:
        return "must not be empty" if min_length == 1 else f"must be at least {min_length} characters long"
    if len(value) > limit:
        return f"must be at most {limit} characters long (got {len(value)})"
    if _COMPILED[rule].fullmatch(value):
        if spec.max_bytes is not None and len(value.encode("utf-8")) > spec.max_bytes:
            return f"must be at most {spec.max_bytes} bytes long in UTF-8"
        return None
    bad = {Rule.TEXT: _BAD_TEXT_CHAR, Rule.ID: _NOT_ID_CHAR}.get(rule, _BAD_CHAR).search(value)
    if bad is not None:
        return f"{spec.says} (found U+{ord(bad.group()):04X} at position {bad.start()})"
    return spec.says


def check(value: Any, field: str, rule: Rule, **limits: int) -> str:
    """``value`` if it obeys ``rule``, else ``InvalidInput`` whose message names ``field`` and the rule."""
    found = problem(value, rule, **limits)
    if found is not None:
        raise exceptions.InvalidInput(reason=f"{field}: {found}")
    return str(value)


def file_name(text: str) -> str:
    """``text`` made a :attr:`Rule.FILE_NAME` (for names built from other names, e.g. a default restore name):
    '/' and forbidden characters become '_', a leading '.' or '-' is dropped, UTF-8 cut at 200 bytes."""
    spec = _SPECS[Rule.FILE_NAME]
    out = _BAD_CHAR.sub("_", text.replace("/", "_")).lstrip(".-") or "_"
    while len(out.encode("utf-8")) > (spec.max_bytes or spec.max_length):
        out = out[:-1]
    return out


def string(rule: Rule, *, min_length: int = 1, max_length: int | None = None,
           nullable: bool = False) -> dict[str, Any]:
    """The JSON-schema fragment of a string field obeying ``rule`` (checked fully with :data:`FORMATS`)."""
    spec = _SPECS[rule]
    out: dict[str, Any] = {"type": ["string", "null"] if nullable else "string", "minLength": min_length,
                           "maxLength": spec.max_length if max_length is None else max_length,
                           "pattern": spec.pattern, "format": f"strongroom-{rule.value}"}
    return out


FORMATS = jsonschema.FormatChecker(formats=())
for _rule in Rule:
    FORMATS.checks(f"strongroom-{_rule.value}")(
        lambda value, rule=_rule: not isinstance(value, str) or problem(value, rule, min_length=0) is None)


def _rule_of(schema: Any) -> Rule | None:
    fmt = schema.get("format") if isinstance(schema, dict) else None
    if isinstance(fmt, str) and fmt.startswith("strongroom-"):
        return Rule(fmt[len("strongroom-"):])
    return None


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of ``schema`` that checks the ``strongroom-*`` formats."""
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS)


# -- messages -----------------------------------------------------------------


def json_path(parts: Iterable[str | int]) -> str:
    """``["plan", "resources", 0, "type"]`` -> ``plan.resources[0].type``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif problem(part, Rule.NAME) is not None:  # a key holding control characters is shown escaped
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def is_secret_field(parts: Iterable[str | int]) -> bool:
    """Whether a field of this path may hold a secret (``restore_auth``, ``password``, ``api_key``...)."""
    for part in parts:
        if isinstance(part, str) and _SECRET_WORDS & set(re.split(r"[^a-z]+", part.lower())):
            return True
    return False


def _rule_message(error: js_exceptions.ValidationError) -> str:
    """What ``error``'s rule asks for, without the instance."""
    kind, value = error.validator, error.validator_value
    says = {
        "type": lambda: f"must be of type {' or '.join(value) if isinstance(value, list) else value}",
        "enum": lambda: f"must be one of {', '.join(repr(v) for v in value)}",
        "const": lambda: f"must be {value!r}",
        "minLength": lambda: f"must be at least {value} characters long",
        "maxLength": lambda: f"must be at most {value} characters long",
        "minimum": lambda: f"must be at least {value}",
        "maximum": lambda: f"must be at most {value}",
        "minProperties": lambda: f"must have at least {value} properties",
        "maxProperties": lambda: f"must have at most {value} properties",
        "minItems": lambda: f"must have at least {value} items",
        "maxItems": lambda: f"must have at most {value} items",
    }.get(str(kind))
    return says() if says else f"does not satisfy its {kind!r} rule"


def describe(error: js_exceptions.ValidationError, root: Sequence[str | int] = ()) -> str:
    """``field: message`` for ``error``; the field is ``root`` + the error's path.

    A name or id rule is told as the rule; under a field that may hold a secret, and for an object or
    array (which may hold one), nothing of the value is quoted; elsewhere jsonschema's own message is
    kept unless it is long.
    """
    parts: list[str | int] = [*root, *error.absolute_path]
    if error.validator == "required" and isinstance(error.validator_value, list):
        instance = error.instance if isinstance(error.instance, dict) else {}
        missing = [name for name in error.validator_value if name not in instance]
        if missing:
            return f"{json_path([*parts, missing[0]])}: {missing[0]!r} is a required property"
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        if extra:
            return f"{json_path([*parts, extra[0]])}: unknown field {extra[0]!r}"
    path = json_path(parts) or "body"
    rule = _rule_of(error.schema)
    if rule is not None and error.validator in ("pattern", "format"):
        return f"{path}: {problem(error.instance, rule, min_length=0) or _SPECS[rule].says}"
    if is_secret_field(parts) or isinstance(error.instance, (dict, list)) or len(error.message) > 300:
        # a container may hold a secret deeper down ({"restore": ["<password>"]}): never quoted either
        return f"{path}: {_rule_message(error)}"
    return f"{path}: {error.message}"


def first_error(schema: dict[str, Any], instance: Any) -> js_exceptions.ValidationError | None:
    """The error of ``instance`` against ``schema`` to report (deterministically chosen), or None."""
    errors = sorted(validator(schema).iter_errors(instance),
                    key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)))
    return js_exceptions.best_match(errors) if errors else None


# -- any JSON text --------------------------------------------------------------

#: How deep a JSON document from outside may nest (objects and arrays).  Deeper documents are refused before
#: anything recursive (a schema check, a serializer, a plugin) walks them; no request of the API needs 10.
MAX_DEPTH = 32
_NEVER_IN_TEXT = re.compile(f"[\\x00{SURROGATES}]")


def check_json(value: Any, root: Sequence[str | int] = ()) -> None:
    """Refuse ``value`` (parsed JSON received under the field ``root``; ``()``: a request body) if it nests
    deeper than :data:`MAX_DEPTH` or any key or string in it holds NUL or a lone surrogate: ``InvalidInput``
    naming the field (for depth, the outermost two levels of the path that is too deep).

    This is the check of free-form values (``extra_info``, plugin parameters) that no name rule covers; a
    field that has its own rule is refused by that rule first, with its own message.  Iterative, so that
    the depth is told rather than overflowing the interpreter's stack.
    """
    stack: list[tuple[list[str | int], Any, int]] = [([], value, 0)]
    while stack:
        path, node, depth = stack.pop()
        where = _where([*root, *path])
        if isinstance(node, str):
            _check_text(node, where)
            continue
        if not isinstance(node, dict | list):
            continue
        if depth >= MAX_DEPTH:
            outer = _where([*root, *path][:2])
            raise exceptions.InvalidInput(reason=f"{outer}: nested more than {MAX_DEPTH} levels deep")
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, child in reversed(items):  # reversed onto the stack: the first item is checked first
            if isinstance(key, str):
                _check_text(key, f"{where}: a key")
            stack.append(([*path, key], child, depth + 1))


def _where(parts: list[str | int]) -> str:
    path = json_path(parts)
    return "body" + path if not path or path.startswith("[") else path


def _check_text(text: str, where: str) -> None:
    bad = _NEVER_IN_TEXT.search(text)
    if bad is not None:
        what = "NUL" if bad.group() == "\x00" else "a lone surrogate"
        raise exceptions.InvalidInput(reason=f"{where}: must not hold {what} (found U+{ord(bad.group()):04X} at "
                                             f"position {bad.start()})")
