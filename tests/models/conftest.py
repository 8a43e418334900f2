"""Fixtures for the model tests."""
from tests.helpers import one_torch_thread  # noqa: F401  (autouse)
