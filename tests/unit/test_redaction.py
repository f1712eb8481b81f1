"""Credentials never shown: the masking helpers every layer uses."""

from __future__ import annotations

import logging
import re

import pytest

from strongroom.redaction import MASK, LogRedactor, RedactedOptions, masked, redact_url_credentials, scrub


def test_scrub_masks_every_secret_longest_first() -> None:
    text = "token abc123 and abc123-longer, key s3cr3t"
    assert scrub(text, ["abc123", "abc123-longer", "s3cr3t", ""]) == f"token {MASK} and {MASK}, key {MASK}"
    assert scrub("nothing here", []) == "nothing here"


@pytest.mark.parametrize(("text", "shown"), [
    ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
    ("redis://:secret@host", "redis://:***@host"),
    ("error from zookeeper://a:b@h1 and redis://c:d@h2", "error from zookeeper://a:***@h1 and redis://c:***@h2"),
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("memory://", "memory://"),
])
def test_url_passwords_are_masked(text: str, shown: str) -> None:
    assert redact_url_credentials(text) == shown


def test_redacted_options_are_a_dict_that_prints_no_secret() -> None:
    options = RedactedOptions({"user": "svc", "key": "pa55", "container": "c"}, {"key"})
    assert options == {"user": "svc", "key": "pa55", "container": "c"}
    assert options["key"] == "pa55"
    assert "pa55" not in repr(options) and "pa55" not in str(options) and "'key': '***'" in repr(options)
    assert masked(options, {"user", "key"}) == {"user": MASK, "key": MASK, "container": "c"}


def test_log_redactor_scrubs_registered_secrets_and_patterns(caplog: pytest.LogCaptureFixture) -> None:
    class Owner:
        pass

    redactor = LogRedactor([(re.compile(r"(Signature=)[0-9a-f]+"), r"\1***")])
    owner = Owner()
    redactor.register(owner, ["TOPSECRET", ""])
    redactor.install(["test-redaction-lib"])
    child = logging.getLogger("test-redaction-lib.child")
    redactor.install(["test-redaction-lib"])  # idempotent, and now on the child too
    assert logging.getLogger("test-redaction-lib").filters.count(redactor) == 1
    with caplog.at_level(logging.DEBUG, logger="test-redaction-lib"):
        child.debug("auth %s Signature=%s", "TOPSECRET", "deadbeef")
        try:
            raise ValueError("TOPSECRET in a traceback")
        except ValueError:
            child.exception("failed")
    assert "TOPSECRET" not in caplog.text and "deadbeef" not in caplog.text
    assert "auth *** Signature=***" in caplog.text
    del owner  # forgotten with its owner
    assert redactor.redact("TOPSECRET") == "TOPSECRET"
