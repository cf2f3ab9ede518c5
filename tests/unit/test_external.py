"""External test sets: a protocol's structures labelled by a reference, saved with
provenance, read back as datasets."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from pytest_mlpval.data import read_dataset
from pytest_mlpval.evaluate import predict
from pytest_mlpval.errors import MlpvalError
from pytest_mlpval.metrics import compute_errors
from pytest_mlpval.potentials import load_potential
from pytest_mlpval.protocols.base import CampaignOptions, Result, Settings
from pytest_mlpval.protocols.domain import (ExternalSet, ExternalSetError, FileLabels,
                                            build_external_set, label_structures,
                                            labels_from_file, read_external_set)
from pytest_mlpval.testing import BrokenCalculator


@pytest.fixture(scope="module")
def sw():
    return load_potential("sw")


@pytest.fixture
def frames():
    """Four MD-like snapshots of a 16-atom diamond cell, as a protocol returns them."""
    from pytest_mlpval.crystals import build_crystal

    out = []
    for i in range(4):
        atoms = build_crystal("diamond") * (2, 1, 1)
        atoms.rattle(0.05, seed=i)
        atoms.info["step"] = 100 * i
        out.append(atoms)
    return out


def fake_dft(atoms):
    """A user's labelling function: harmonic springs to the ideal diamond sites."""
    from pytest_mlpval.crystals import build_crystal

    ideal = build_crystal("diamond") * (2, 1, 1)
    d = atoms.positions - ideal.positions
    return {"energy": -5.4 * len(atoms) + float((d**2).sum()), "forces": -2.0 * d}


#: x coordinates of atom 0 of the structures on which the "DFT" below fails
FAIL_X: list[float] = []


def failing_for_step_200(atoms):
    if any(abs(atoms.positions[0, 0] - x) < 1e-9 for x in FAIL_X):
        raise RuntimeError("SCF did not converge")
    return fake_dft(atoms)


def test_build_read_back_and_test_a_candidate(tmp_path, frames, sw):
    es = build_external_set(frames, tmp_path / "sets" / "md.xyz", sw, protocol="md",
                            parameters={"temperature_K": 300, "timestep_fs": 1.0})
    assert es.n_structures == 4 and es.keys == {"energy": "ref_energy",
                                                 "forces": "ref_forces",
                                                 "stress": "ref_stress"}
    assert es.dataset_spec == (f"md={tmp_path / 'sets' / 'md.xyz'},energy=ref_energy,"
                               "forces=ref_forces,stress=ref_stress")
    data = read_dataset(es.dataset_spec)
    assert data.labels == ("energy", "forces", "stress")
    assert data.config_types == ("md",) * 4
    for i, atoms in enumerate(frames):
        atoms = atoms.copy()
        atoms.calc = sw.calculator
        assert data.energy[i] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    errors = compute_errors(data, predict(sw.calculator, data))
    assert errors.metrics()["force_rmse"] < 1e-6  # SW tested on its own labels
    shifted = load_potential("pytest_mlpval.testing:sw_shifted")
    assert compute_errors(data, predict(shifted.calculator, data)).metrics()[
        "energy_rmse"] == pytest.approx(0.010, abs=1e-6)


def test_provenance_is_in_the_file_and_the_sidecar(tmp_path, frames, sw):
    es = build_external_set(frames, tmp_path / "md.xyz", sw, protocol="md",
                            parameters={"temperature_K": 300})
    written = ase.io.read(es.path, ":")
    assert [a.info["mlpval_source_index"] for a in written] == [0, 1, 2, 3]
    assert [a.info["step"] for a in written] == [0, 100, 200, 300]  # protocol info kept
    provenance = json.loads(written[2].info["mlpval_provenance"])
    assert provenance["protocol"] == "md"
    assert provenance["parameters"] == {"temperature_K": 300}
    assert provenance["reference"]["sha256"] == sw.info.sha256
    assert written[0].info["mlpval_reference_sha256"] == sw.info.sha256
    sidecar = json.loads((tmp_path / "md.xyz.json").read_text())
    assert sidecar["sha256"] == es.sha256 and sidecar["provenance"] == provenance
    again = read_external_set(es.path)
    assert again.provenance == es.provenance and again.keys == es.keys
    with open(es.path, "a") as handle:  # edited after labelling
        handle.write(" ")
    with pytest.raises(ExternalSetError, match="changed since it was labelled"):
        read_external_set(es.path)


def test_protocol_energies_are_not_taken_for_labels(tmp_path, frames, sw):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames[0].calc = SinglePointCalculator(frames[0], energy=123.0,
                                           forces=np.ones((16, 3)))
    es = build_external_set(frames, tmp_path / "md.xyz", sw, protocol="md")
    data = read_dataset(es.dataset_spec)
    assert data.energy[0] != 123.0
    text = Path(es.path).read_text()
    assert "energy=123" not in text and ":forces:" not in text


def test_labelling_function_with_failures(tmp_path, frames):
    es = build_external_set(frames, tmp_path / "f.xyz", fake_dft, protocol="rss",
                            config_type="rss-minimum")
    data = read_dataset(es.dataset_spec)
    assert data.labels == ("energy", "forces") and data.config_types[0] == "rss-minimum"
    assert es.provenance["reference"]["loader"] == "label-function"
    assert data.energy[0] == pytest.approx(fake_dft(frames[0])["energy"])
    FAIL_X.append(frames[2].positions[0, 0])
    try:
        with pytest.raises(ExternalSetError, match="structure 2: RuntimeError: SCF did not"):
            build_external_set(frames, tmp_path / "g.xyz", failing_for_step_200,
                               protocol="rss")
        es = build_external_set(frames, tmp_path / "g.xyz", failing_for_step_200,
                                protocol="rss", skip_failed=True)
    finally:
        FAIL_X.clear()
    assert es.n_structures == 3
    assert es.provenance["failed"][0]["index"] == 2
    assert es.provenance["source_indices"] == [0, 1, 3]


def test_nan_labels_name_the_structure(tmp_path, frames, sw):
    close = frames[1].copy()
    close.positions[1] = close.positions[0] + [1.5, 0, 0]  # two atoms 1.5 Å apart
    broken = BrokenCalculator(sw.calculator, "nan")
    with pytest.raises(ExternalSetError, match=r"structure 1: .*energy is not finite"):
        build_external_set([frames[0], close], tmp_path / "n.xyz", broken, protocol="md")


def test_bad_labels_from_a_function(tmp_path, frames):
    with pytest.raises(ExternalSetError, match=r"forces of shape \(3,\), expected \(16, 3\)"):
        build_external_set(frames[:1], tmp_path / "b.xyz",
                           lambda a: {"energy": 0.0, "forces": [0, 0, 0]}, protocol="x")
    with pytest.raises(ExternalSetError, match="unknown label"):
        build_external_set(frames[:1], tmp_path / "b.xyz",
                           lambda a: {"enrgy": 0.0}, protocol="x")


def test_labels_from_a_file_matched_by_geometry(tmp_path, frames, sw):
    first = build_external_set(frames, tmp_path / "dft.xyz", sw, protocol="md")
    reference = labels_from_file(first.path, energy="ref_energy", forces="ref_forces",
                                 stress="ref_stress")
    es = build_external_set(frames[::-1], tmp_path / "again.xyz", reference, protocol="md")
    assert np.allclose(read_dataset(es.dataset_spec).energy,
                       read_dataset(first.dataset_spec).energy[::-1])
    assert es.provenance["reference"]["loader"] == "file"
    stranger = frames[0].copy()
    stranger.positions[0] += 0.3
    with pytest.raises(ExternalSetError, match="no structure in .* matches structure 0"):
        build_external_set([stranger], tmp_path / "x.xyz", reference, protocol="md")


def test_stress_only_where_every_structure_is_periodic(tmp_path, frames, sw):
    cluster = frames[0].copy()
    cluster.pbc = False
    cluster.center(vacuum=6.0)
    es = build_external_set([frames[1], cluster], tmp_path / "mix.xyz", sw, protocol="md")
    assert "stress" not in es.keys
    assert es.provenance["notes"] == ["stress left out: only 1 of 2 structures have it"]
    assert read_dataset(es.dataset_spec).stress is None


def test_labels_are_cached(tmp_path, frames, sw):
    cached = CampaignOptions(cache_dir=tmp_path / "cache")
    first = label_structures(frames, sw, options=cached)
    second = label_structures(frames, sw, options=cached)
    assert first.n_from_cache == 0 and second.n_from_cache == 4
    assert second.values[3]["energy"] == first.values[3]["energy"]
    moved = [a.copy() for a in frames]
    moved[0].positions[0, 0] += 0.01
    assert label_structures(moved, sw, options=cached).n_from_cache == 0
    es = build_external_set(frames, tmp_path / "c.xyz", sw, protocol="md", options=cached)
    assert es.n_structures == 4 and es.provenance["reference"]["name"] == "sw"
    assert label_structures(frames, sw, options=cached).n_from_cache == 4


def test_bad_inputs(tmp_path, frames, sw):
    with pytest.raises(ExternalSetError, match="no structures"):
        build_external_set([], tmp_path / "e.xyz", sw, protocol="md")
    with pytest.raises(ExternalSetError, match="protocol must be a non-empty string"):
        build_external_set(frames, tmp_path / "e.xyz", sw, protocol="")
    with pytest.raises(ExternalSetError, match="reference must be"):
        build_external_set(frames, tmp_path / "e.xyz", 42, protocol="md")
    with pytest.raises(ExternalSetError, match="has no sidecar"):
        ok = build_external_set(frames, tmp_path / "ok.xyz", sw, protocol="md")
        (tmp_path / "plain.xyz").write_text(Path(ok.path).read_text())
        read_external_set(tmp_path / "plain.xyz")


def test_external_sets_follow_the_protocol_contract(tmp_path, frames, sw):
    """ExternalSetError is the package's error and a ValueError; an external set is a
    protocol Result; a labels file is a reference given by its settings."""
    assert issubclass(ExternalSetError, MlpvalError) and issubclass(ExternalSetError,
                                                                      ValueError)
    assert issubclass(ExternalSet, Result) and issubclass(FileLabels, Settings)
    es = build_external_set(frames, tmp_path / "md.xyz", sw, protocol="md")
    assert es.metrics() == {"n_structures": 4.0, "n_failed": 0.0}
    labels = labels_from_file(es.path, energy="ref_energy", forces="ref_forces",
                              stress="ref_stress")
    assert FileLabels.from_dict(json.loads(json.dumps(labels.as_dict()))) == labels
