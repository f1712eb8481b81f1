"""Conformance suites that plugin authors (ours and third parties) import in their tests.

``strongroom.testing.bank.BankConformance`` checks a bank plugin and
``strongroom.testing.block.BlockBackendConformance`` a block backend; each is a
pytest class to subclass with a factory method.  These modules import pytest,
so import them only from tests.

The fakes live beside the suites, for our own wrappers and for third parties:
``strongroom.testing.faults.FaultyBank`` wraps any bank plugin to make chosen
calls fail or wait; ``strongroom.testing.flaky_block.FlakyBlockBackend`` does the
same for a block backend; ``strongroom.testing.recording.RecordingBank`` notes
every key a workload touches (the bank layout test uses it).
"""
