"""Invariances, internal consistency and cost of the candidate, on structures Hypothesis
generates from its species (no reference data needed): translation, rotation and
permutation invariance, forces as the energy gradient, stress as the strain derivative,
extensivity, zero net force, smoothness across the cutoff, finite outputs, and the cost
per atom of a force call on 64-512-atom cells. See pytest_mlpval/physics_tests.py."""

from pytest_mlpval.physics_tests import *  # noqa: F401,F403
