"""The physics-check cache (:mod:`pytest_mlpval.check_cache`): keys, exact structures,
atomic files, and damaged entries removed with a CacheWarning."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from ase.build import bulk

from pytest_mlpval.campaign_cache import CacheWarning
from pytest_mlpval.check_cache import (CheckCache, CheckEntry, check_key, check_seed,
                                       source_digest, structure_from_dict, structure_to_dict)

RESULT = {"check": "translation", "value": 1e-9, "tolerance": 1e-6, "unit": "eV/atom",
          "detail": "energy change 1e-9", "error": None, "skipped": None, "steps": [],
          "step_name": ""}
PARAMETERS = {"tolerances": {"energy_eV_atom": 1e-6},
              "hypothesis": {"max_examples": 25, "phases": ["generate"]}}


def key(**changes):
    arguments = {"check": "translation", "potential_sha256": "ab" * 32,
                 "loader_versions": {"ase": "3.23"}, "parameters": PARAMETERS, **changes}
    return check_key(arguments.pop("check"), arguments.pop("potential_sha256"), **arguments)


def test_the_key_changes_with_whatever_changes_the_outcome():
    base = key()
    assert base == key() and len(base) == 64
    others = [key(check="rotation"), key(potential_sha256="cd" * 32),
              key(loader_versions={"ase": "3.24"}),
              key(parameters={**PARAMETERS, "tolerances": {"energy_eV_atom": 1e-4}}),
              key(parameters={**PARAMETERS, "hypothesis": {"max_examples": 26,
                                                           "phases": ["generate"]}})]
    assert len({base, *others}) == 6
    # a candidate without a content hash (a bare factory) is never cached
    assert key(potential_sha256=None) is None
    assert check_seed(base) == int(base[:16], 16)


def test_the_source_digest_follows_the_code(tmp_path):
    code = tmp_path / "check.py"
    code.write_text("A = 1\n")
    before = source_digest([code])
    code.write_text("A = 22\n")  # another size: a new stamp whatever the clock
    assert source_digest([tmp_path / "other.py"]) != before
    assert source_digest([code]) != before  # read again: the cache is per content
    assert source_digest([tmp_path / "missing.py"]) != source_digest([tmp_path / "gone.py"])


def test_a_structure_comes_back_exactly():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.0123456789012345, seed=3)
    again = structure_from_dict(json.loads(json.dumps(structure_to_dict(atoms))))
    assert np.array_equal(again.positions, atoms.positions)
    assert np.array_equal(again.cell.array, atoms.cell.array)
    assert list(again.numbers) == list(atoms.numbers) and list(again.pbc) == [True] * 3


@pytest.mark.parametrize("entry", [
    CheckEntry("translation", "passed", 25, result=RESULT, seconds=1.5),
    CheckEntry("translation", "passed", 5, result={**RESULT, "steps": [
        [1e-3, 2e-4, float("nan"), float("nan")]], "step_name": "step (Å)"}),
    CheckEntry("translation", "skipped", 1, reason="stress needs a periodic cell"),
    CheckEntry("translation", "failed", 3, message="translation check failed",
               structure=structure_to_dict(bulk("Si", "diamond", a=5.43))),
], ids=["passed", "passed-steps", "skipped", "failed"])
def test_an_entry_is_kept_and_read_back(tmp_path, entry):
    cache = CheckCache(tmp_path / "checks")
    path = cache.put(key(), entry)
    assert path == tmp_path / "checks" / f"{key()}.json"
    assert os.listdir(tmp_path / "checks") == [path.name]  # no temporary file left
    found = cache.get(key(), "translation")
    assert json.dumps(found.as_dict(), sort_keys=True) == json.dumps(entry.as_dict(),
                                                                    sort_keys=True)
    assert cache.get(key(check="rotation"), "rotation") is None


def damaged(text):
    return lambda data: text


def edit(**fields):
    def change(data):
        data["entry"].update(fields)
        return json.dumps(data)
    return change


@pytest.mark.parametrize("damage, why", [
    (damaged('{"format": 1, "key": '), "not valid JSON"),
    (damaged("[1, 2]"), "not a check-cache file"),
    (lambda data: json.dumps({**data, "format": 99}), "has the format 99"),
    (lambda data: json.dumps({**data, "key": "0" * 64}), "names another key"),
    (edit(check="rotation"), "an entry of the check 'rotation'"),
    (edit(outcome="maybe"), "outcome 'maybe' is none of"),
    (edit(examples=-1), "not a count"),
    (edit(examples=0), "a pass of no structures"),
    (edit(result={**RESULT, "value": 1.0}), "beyond its tolerance"),
    (edit(result={**RESULT, "value": float("nan")}), "beyond its tolerance"),
    (edit(result={k: v for k, v in RESULT.items() if k != "unit"}), "fields of a check"),
    (edit(outcome="skipped"), "a skip without its reason"),
    (edit(outcome="failed"), "its structure is not"),
    (edit(outcome="failed", structure={"numbers": [14], "positions": [[0, 0, "x"]],
                                       "cell": [[1, 0, 0]] * 3, "pbc": [True] * 3}),
     "positions or cell"),
], ids=["cut-short", "not-an-object", "format", "key", "check", "outcome", "count",
        "no-structures", "value-beyond", "value-nan", "fields", "skip-reason",
        "no-structure", "bad-position"])
def test_a_damaged_entry_is_removed_with_a_warning(tmp_path, damage, why):
    cache = CheckCache(tmp_path)
    path = cache.put(key(), CheckEntry("translation", "passed", 25, result=RESULT))
    path.write_text(damage(json.loads(path.read_text())))
    with pytest.warns(CacheWarning, match=why) as caught:
        assert cache.get(key(), "translation") is None
    assert str(path) in str(caught[0].message)
    assert not path.exists()
    assert cache.get(key(), "translation") is None  # gone: nothing more to say


def test_an_unreadable_entry_is_removed_with_a_warning(tmp_path):
    cache = CheckCache(tmp_path)
    path = cache.put(key(), CheckEntry("translation", "passed", 25, result=RESULT))
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.warns(CacheWarning, match="cannot be read"):
        assert cache.get(key(), "translation") is None
    assert not path.exists()

