"""The ``mlpval_external`` fixture: external test sets built from a protocol's structures,
labelled by a reference (the ``pytest_mlpval_labeller`` hook or a potential spec), saved
with provenance in pytest's cache, and the candidate's errors on them. Re-exported by
:mod:`pytest_mlpval.domain_tests`; unlike its other fixtures it judges a candidate, so a
test using it runs once per ``--potential``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_mlpval.markers import thresholds_of
from pytest_mlpval.potentials import PotentialLoadError, PotentialSpecError, load_potential
from pytest_mlpval.protocols.domain import build_external_set, frames_sha256, structures_of

__all__ = ["ExternalSets", "mlpval_external"]


class ExternalSets:
    """What the ``mlpval_external`` fixture returns."""

    def __init__(self, request: pytest.FixtureRequest, mlpval: Any) -> None:
        self._request = request
        self._mlpval = mlpval

    def reference(self, reference: Any) -> Any:
        """A labelling reference: a name is first offered to the
        ``pytest_mlpval_labeller`` hook, then loaded as a potential spec (paths relative
        to the rootdir); anything else (Potential, calculator, callable,
        labels_from_file) is used as it is."""
        if not isinstance(reference, str):
            return reference
        config = self._request.config
        labeller = config.hook.pytest_mlpval_labeller(config=config, name=reference)
        if labeller is not None:
            return labeller

        def hook(spec: str) -> Any:
            return config.hook.pytest_mlpval_load_potential(config=config, spec=spec)

        try:
            return load_potential(reference, str(config.rootpath), hook)
        except (PotentialLoadError, PotentialSpecError) as exc:
            raise pytest.UsageError(
                f"{self._request.node.nodeid}: reference {reference!r}: no "
                f"pytest_mlpval_labeller hook returned a labeller for it, and it is not a "
                f"potential spec ({exc})") from None

    def _folder(self) -> Path:
        cache = getattr(self._request.config, "cache", None)
        if cache is not None:
            return Path(cache.mkdir("mlpval-external"))
        return self._request.getfixturevalue("tmp_path_factory").mktemp("mlpval-external")

    def build(self, frames: Any, reference: Any, *, name: str, protocol: str,
              parameters: dict[str, Any] | None = None, skip_failed: bool = False) -> Any:
        """Label a protocol's ``frames`` (ASE Atoms, or a result with ``structures``)
        with ``reference`` and save them under pytest's cache
        (``mlpval-external/<name>-<digest>.xyz`` and its ``.json`` provenance sidecar).
        The provenance holds the protocol, its ``parameters``, the candidate that made
        the structures and the reference's identity. Returns the ExternalSet."""
        structures = structures_of(frames)
        labeller = self.reference(reference)
        potential = self._mlpval.potential
        params = {**(parameters or {}), "made_by": potential.info.name,
                  "made_by_sha256": potential.info.sha256}
        key = json.dumps({"frames": frames_sha256(structures), "reference": repr(reference)
                          if not isinstance(reference, str) else reference,
                          "protocol": protocol, "parameters": params},
                         sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        options = self._mlpval.run_options()
        if callable(labeller) and not hasattr(labeller, "get_potential_energy") \
                and not hasattr(labeller, "calculator"):
            options = self._mlpval.run_options(workers=0, scheduler=None)  # the user's, here
        return build_external_set(structures, self._folder() / f"{name}-{digest}.xyz",
                                  labeller, protocol=protocol, parameters=params, name=name,
                                  skip_failed=skip_failed, options=options)

    def evaluate(self, external: Any, **limits: float) -> Any:
        """The candidate's errors on an ExternalSet (recorded under its name, beside the
        internal test sets); checked against ``limits`` and the test's
        ``mlpval_thresholds`` markers when there are any."""
        __tracebackhide__ = True
        report = self._mlpval.errors(external.read())
        if limits or thresholds_of(self._request.node):
            self._mlpval.check(report, **limits)
        return report

    def test(self, frames: Any, reference: Any, *, name: str, protocol: str,
             parameters: dict[str, Any] | None = None, skip_failed: bool = False,
             **limits: float) -> Any:
        """:meth:`build` then :meth:`evaluate`; returns the ErrorReport."""
        __tracebackhide__ = True
        external = self.build(frames, reference, name=name, protocol=protocol,
                              parameters=parameters, skip_failed=skip_failed)
        return self.evaluate(external, **limits)


@pytest.fixture
def mlpval_external(request: pytest.FixtureRequest, mlpval: Any) -> ExternalSets:
    """Build, label, save and test external test sets (see :class:`ExternalSets`)."""
    return ExternalSets(request, mlpval)
