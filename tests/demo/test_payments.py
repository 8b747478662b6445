"""demo.payments: answers while healthy, stops answering in integration-outage."""

from __future__ import annotations

import threading

import pytest
import requests

from demo.payments import make_server
from demo.scenarios import write_scenario
from tests import harness


@pytest.fixture
def provider(tmp_path):
    listen = f"127.0.0.1:{harness.free_port()}"
    server = make_server(listen, tmp_path, hang=3.0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    yield f"http://{listen}", tmp_path
    server.hang_release.set()
    server.shutdown()
    server.server_close()


def test_health_and_charges_while_normal(provider):
    url, _ = provider
    assert requests.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
    charge = requests.post(f"{url}/v1/charges", json={"amount": 12.99}, timeout=5).json()
    assert charge["status"] == "succeeded" and charge["id"].startswith("ch_")
    assert requests.post(f"{url}/v1/charges", json={}, timeout=5).status_code == 400
    assert "fakepay_charges_total 1.0" in requests.get(f"{url}/metrics", timeout=5).text


def test_outage_means_no_answer_and_normal_brings_it_back(provider):
    url, data_dir = provider
    write_scenario(data_dir, "integration-outage")
    harness.wait_until(lambda: _times_out(f"{url}/health"), timeout=30,
                       message="the provider to stop answering")
    with pytest.raises(requests.RequestException):
        requests.post(f"{url}/v1/charges", json={"amount": 1}, timeout=1)
    assert requests.get(f"{url}/-/ready", timeout=5).status_code == 200  # supervisor's check
    write_scenario(data_dir, "normal")
    harness.wait_until(lambda: requests.get(f"{url}/health", timeout=5).ok, timeout=30,
                       message="the provider to answer again")


def _times_out(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.RequestException:
        return True
    return False
