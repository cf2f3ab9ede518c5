"""The exceptions' common root, and the errors every layer shares.

Plain library (no pytest), nothing imported. Every exception the package raises derives
from :class:`MlpvalError` (as Hypothesis' errors derive from ``HypothesisException``), and
also from the builtin it refines (``ValueError`` for bad input, ``RuntimeError`` for a
computation that failed, ``AssertionError`` for a failed validation), so that both
``except MlpvalError`` and the builtin catch it. Warnings derive from
:class:`MlpvalWarning`.
"""

from __future__ import annotations

__all__ = ["MlpvalError", "MlpvalWarning", "NonFiniteError", "SettingsError",
           "ProtocolError", "UnknownProtocolError"]


class MlpvalError(Exception):
    """Root of every exception raised by pytest-mlpval."""


class MlpvalWarning(UserWarning):
    """Root of every warning given by pytest-mlpval."""


class NonFiniteError(MlpvalError, ArithmeticError):
    """A calculator or a computation gave NaN or an infinity where a number was needed
    (the one meaning of "non-finite"; the message names what and where)."""


class SettingsError(MlpvalError, ValueError):
    """A protocol setting is unknown or has an invalid value; the message names it."""


class ProtocolError(MlpvalError, RuntimeError):
    """A validation protocol could not produce a result (the message says why)."""


class UnknownProtocolError(MlpvalError, KeyError):
    """No protocol of that name is registered; the message lists those that are."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
