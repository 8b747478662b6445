"""The committed grafana/generated/ is exactly what the dashboard sources generate."""

import json

from grafana import generate
from pulse.dashboards import load_all

NAMES_UIDS = {
    "executive": "pulse-executive", "product": "pulse-product", "coach": "pulse-coach",
    "system": "pulse-system", "ai": "pulse-ai", "business": "pulse-business",
    "pulse": "pulse-self",
}


def test_generated_json_is_up_to_date():
    problems = generate.differences()
    assert not problems, "\n".join(problems) + "\nrun `make dashboards` and commit"


def test_check_mode_exit_codes(tmp_path, monkeypatch, capsys):
    assert generate.main(["--check"]) == 0
    stale = tmp_path / "generated"
    generate.write_all(stale)
    (stale / "coach.json").write_text("{}\n")
    (stale / "orphan.json").write_text("{}\n")
    problems = generate.differences(stale)
    assert any("coach.json: differs" in p for p in problems)
    assert any("orphan.json: no source" in p for p in problems)


def test_every_dashboard_has_its_shared_uid_and_sorted_keys():
    docs = load_all()
    assert {name: doc["uid"] for name, doc in docs.items()} == NAMES_UIDS
    for name in docs:
        text = (generate.GENERATED / f"{name}.json").read_text()
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
