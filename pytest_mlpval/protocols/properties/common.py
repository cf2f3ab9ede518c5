"""What the property protocols share: the family's name, the bases of their settings
and results, and the family's name for a protocol failure.

Plain library (no pytest). A property protocol's settings subclass
:class:`PropertySettings` (the element, and the ready-made test's group and tier
settings), its result :class:`PropertyResult` (the metric names it owns, its physical
check); it is registered with ``register(name, function, Settings, Result,
family=FAMILY)`` (:func:`~pytest_mlpval.protocols.base.register`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from pytest_mlpval.errors import ProtocolError
from pytest_mlpval.protocols.base import Result, Settings

__all__ = ["FAMILY", "PropertyError", "PropertySettings", "PropertyResult"]

#: the family name the property protocols are registered under
FAMILY = "properties"

#: the family's old name of :class:`~pytest_mlpval.errors.ProtocolError`: ``except
#: PropertyError`` catches every protocol failure (non-finite results and symmetry
#: changes included)
PropertyError = ProtocolError


@dataclass(frozen=True)
class PropertySettings(Settings):
    """Base of the property protocols' settings: the element, and what the ready-made
    tests (:mod:`pytest_mlpval.property_tests`) need to know of a protocol.

    Class attributes
    ----------------
    group : str
        The ready-made test that runs the protocol (``"lattice"`` runs ``lattice`` and
        ``eos``); empty: a group of its own, named like the protocol.
    tiers : mapping of str to mapping
        Overrides of the settings in each tier (``{"full": {"n_points": 9}}``).
    """

    group: ClassVar[str] = ""
    tiers: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    symbol: str = "Si"


class PropertyResult(Result):
    """Base of the property results (:class:`~pytest_mlpval.protocols.base.Result`).

    Class attributes
    ----------------
    owns : str
        A regular expression matching the names of the metrics the ready-made tests take
        from this result (the properties it computes); empty: none.
    """

    protocol = "property"
    owns: ClassVar[str] = ""

    def assert_physical(self) -> None:
        """Raise :class:`~pytest_mlpval.assertions.MlpvalAssertionError` when the result
        describes no physical solid (Born- or dynamically unstable, an extrapolated
        equation of state); nothing to check by default."""
