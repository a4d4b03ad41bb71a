"""Fixtures of the fleet unit tests (defined in fleet_support)."""

from fleet_support import env

__all__ = ["env"]
