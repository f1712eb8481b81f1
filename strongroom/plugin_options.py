"""Plugin options checked against a JSON schema, with errors that name the option and never quote a secret.

Banks (``swift``, ``s3``) and block backends (``rbd``, ``cinder``) take their options from provider files;
each declares a schema and the names of its secret options, and says what is wrong through
:func:`describe_schema_error` so that every plugin words it the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import jsonschema

#: What is said of a secret option whose value breaks its schema (the value itself never is).
SECRET_INVALID = "has an invalid value (not shown: it is a secret)"


def first_schema_error(options: Mapping[str, Any], schema: Mapping[str, Any]) -> jsonschema.ValidationError | None:
    """The first (by option name) way ``options`` break ``schema``; None if they fit."""
    validator = jsonschema.Draft202012Validator(dict(schema))
    errors = sorted(validator.iter_errors(dict(options)), key=lambda e: [str(p) for p in e.path])
    return errors[0] if errors else None


def describe_schema_error(err: jsonschema.ValidationError, options: Mapping[str, Any],
                          schema: Mapping[str, Any], *, secret_options: Collection[str],
                          secret_message: Callable[[Mapping[str, Any]], str],
                          every_unknown: bool = False) -> tuple[str, str]:
    """(option named, message) for ``err``; the message never quotes the value of a secret option.

    ``secret_message(property schema)`` is what is said of an invalid secret; an
    unknown option names the first one, or all of them with ``every_unknown``.
    """
    props: Mapping[str, Any] = schema.get("properties", {})
    if err.path:
        name = str(err.path[0])
        return name, (secret_message(props.get(name, {})) if name in secret_options else err.message)
    if err.validator == "additionalProperties":
        unknown = sorted(set(options) - set(props))
        return (", ".join(unknown) if every_unknown else unknown[0]), "unknown option"
    if err.validator == "required" and "'" in err.message:
        return err.message.split("'")[1], "is required"
    return "options", err.message
