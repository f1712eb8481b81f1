"""The one set of name and id rules, and schema errors that never quote a secret."""

from __future__ import annotations

import re

import pytest

from strongroom import exceptions, validation
from strongroom.validation import Rule

SECRET = "s3cr3t-value"


@pytest.mark.parametrize("rule", list(Rule))
@pytest.mark.parametrize("value", ["ok", "a\nb", "\u202e", "..", ".", "a/b", "-x", ".x", "a b", "é" * 101, "\ud800",
                                   "x" * 256, "tab\there"])
def test_the_schema_fragment_and_check_agree(rule: Rule, value: str) -> None:
    """The JSON-schema fragment (what the OpenAPI document shows) accepts exactly what :func:`check` does."""
    by_check = validation.problem(value, rule) is None
    by_schema = validation.first_error(validation.string(rule), value) is None
    assert by_check == by_schema
    spec_pattern = validation.string(rule)["pattern"]
    if by_check:
        assert re.search(spec_pattern, value)


def test_check_names_the_field_and_never_quotes_the_value() -> None:
    with pytest.raises(exceptions.InvalidInput) as info:
        validation.check("x\nERROR forged", "plan.name", Rule.NAME)
    assert info.value.kwargs["reason"] == ("plan.name: must be printable text without control or "
                                           "bidirectional-override characters (found U+000A at position 1)")


@pytest.mark.parametrize(("text", "made"), [("a/b-restore-1", "a_b-restore-1"), ("..-restore-1", "restore-1"),
                                            ("x\ny", "x_y"), ("-rf", "rf"), ("é" * 150, "é" * 100), ("", "_")])
def test_file_name_makes_a_usable_file_name(text: str, made: str) -> None:
    assert validation.file_name(text) == made
    assert validation.problem(made, Rule.FILE_NAME) is None


@pytest.mark.parametrize("instance", [{"password": 12}, {"api_key": [SECRET]}, {"auth": {"token": SECRET * 30}},
                                      {"auth": SECRET}])
def test_errors_under_secret_fields_tell_the_rule_not_the_value(instance: dict[str, object]) -> None:
    schema = {"type": "object", "properties": {
        "password": {"type": "string"}, "api_key": {"type": "string"},
        "auth": {"type": "object", "properties": {"token": {"type": "string", "maxLength": 20}}}}}
    error = validation.first_error(schema, instance)
    assert error is not None
    message = validation.describe(error, ["parameters", "OS::Cinder::Volume"])
    assert message.startswith("parameters.OS::Cinder::Volume.")
    assert SECRET not in message and "12" not in message


def test_keys_with_control_characters_are_shown_escaped() -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    error = validation.first_error(schema, {"a\nb": 1})
    assert error is not None
    assert "\n" not in validation.describe(error, ["plan"])


# -- any JSON text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "root", "message"), [
    ({"a": {"b": ["x", "y\x00"]}}, (), "a.b[1]: must not hold NUL (found U+0000 at position 1)"),
    ({"a\ud800": 1}, ("checkpoint", "extra_info"), "checkpoint.extra_info: a key: must not hold a lone surrogate"),
    ("\udfff", ("parameters",), "parameters: must not hold a lone surrogate (found U+DFFF at position 0)"),
    (["ok", "\x00"], (), "body[1]: must not hold NUL"),
])
def test_nul_and_lone_surrogates_anywhere_are_refused_naming_the_field(value: object, root: tuple[str, ...],
                                                                       message: str) -> None:
    with pytest.raises(exceptions.InvalidInput) as err:
        validation.check_json(value, root)
    assert err.value.kwargs["reason"].startswith(message)


def test_depth_is_refused_without_overflowing_the_stack() -> None:
    deep: object = "x"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(exceptions.InvalidInput, match=f"body\\[0\\]\\[0\\]: nested more than {validation.MAX_DEPTH}"):
        validation.check_json(deep)
    shallow: object = "x"
    for _ in range(validation.MAX_DEPTH):
        shallow = {"k": shallow}
    validation.check_json(shallow)  # exactly the limit is fine
    validation.check_json({"name": "Ünïcödé ✓ 名前", "text": "tab\tand\nlines", "n": [1, 2.5, None, True]})
