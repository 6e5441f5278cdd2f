import json

import pytest

from deploy_robust.tune.measure import Cache, paired_drop


def test_the_cache_computes_once_and_survives_a_new_process(tmp_path):
    calls = []
    cache = Cache(tmp_path / "m.json")
    assert cache.get("a", lambda: calls.append(1) or 3.5) == 3.5 and cache.get("a", lambda: 0) == 3.5
    again = Cache(tmp_path / "m.json")
    assert again.get("a", lambda: 0) == 3.5 and calls == [1] and (again.hits, again.misses) == (1, 0)
    assert json.loads((tmp_path / "m.json").read_text())["entries"] == {"a": 3.5}


def test_a_forged_or_malformed_cache_is_set_aside_and_recomputed(tmp_path):
    Cache(tmp_path / "m.json").get("a", lambda: 3.5)
    document = json.loads((tmp_path / "m.json").read_text())
    document["entries"]["a"] = 100.0  # edited without this user's key
    (tmp_path / "m.json").write_text(json.dumps(document))
    forged = Cache(tmp_path / "m.json")
    assert forged.get("a", lambda: 3.5) == 3.5 and forged.rejected == 1 and forged.misses == 1
    for bad in (b"{not json", b"\x00\xff" * 10, b"[" * 100_000, b'{"entries": [], "tag": 1}'):
        (tmp_path / "m.json").write_bytes(bad)
        again = Cache(tmp_path / "m.json")
        assert again.values == {} and again.rejected == 1


def test_the_paired_drop_counts_discordant_points_on_the_same_points():
    reference = {"per_example": {"robust": "1111100000"}}
    candidate = {"per_example": {"robust": "1110100001"}}  # loses one, gains one
    d = paired_drop(reference, candidate)
    assert d["drop"] == 0 and (d["lost"], d["gained"], d["n"]) == (1, 1, 10) and d["ci95"][0] < 0 < d["ci95"][1]
    worse = paired_drop(reference, {"per_example": {"robust": "0000000000"}})
    assert worse["drop"] == pytest.approx(0.5) and worse["ci95"][0] > 0
    with pytest.raises(ValueError):
        paired_drop(reference, {"per_example": {"robust": "1"}})
