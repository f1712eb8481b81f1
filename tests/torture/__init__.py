"""The torture test: random SIGKILLs of the all-in-one in the middle of protect, restore, verify, delete and
garbage collection, a restart on the same state, then the invariants (doc/testing.md, "The torture test").

:mod:`tests.torture.runner` runs the trials, :mod:`tests.torture.invariants` checks what must hold after
each, :mod:`tests.torture.report` tabulates where the kills landed.  ``make torture`` runs 200 trials
(``TRIALS``); a short run of five is part of ``make test``.
"""
