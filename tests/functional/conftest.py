from tests.functional.harness import all_in_one  # noqa: F401 - the fixture
