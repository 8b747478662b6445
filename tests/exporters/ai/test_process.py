"""The AI exporter as a real process: acknowledged evaluations survive kill -9."""

import signal

import pytest
import requests

from tests.harness import pulse_env, write_pulse_config


@pytest.mark.integration
def test_acknowledged_state_survives_kill_9(tmp_path, service):
    path = tmp_path / "pulse.yml"
    cfg = write_pulse_config(path, tmp_path / "data",
                             exporters={"ai": {"drift": {"min_observations": 1}}})
    listen = cfg["exporters"]["ai"]["listen"]
    env = pulse_env(tmp_path / "data")
    proc = service("exporters.ai", path, env, listen)
    base = f"http://{listen}/api/analytics/ai"
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {env['PULSE_ADMIN_TOKEN']}"
    resp = http.post(f"{base}/evaluations", timeout=10, json={
        "model": "recovery", "modelVersion": "3.1.0", "task": "recovery",
        "metrics": {"accuracy": 0.77}, "sampleSize": 900})
    assert resp.status_code == 201
    http.post(f"{base}/drift/reference", timeout=10, json={
        "model": "recovery", "feature": "hrv", "bins": [0, 40, 80, 200], "counts": [30, 50, 20]})
    resp = http.post(f"{base}/drift/observations", timeout=10, json={
        "model": "recovery", "feature": "hrv", "values": [10, 50, 50, 150]})
    assert resp.status_code == 202
    proc.kill(signal.SIGKILL)
    service("exporters.ai", path, env, listen)
    text = requests.get(f"http://{listen}/metrics", timeout=10).text
    assert 'ai_model_accuracy_ratio{model="recovery",model_version="3.1.0"} 0.77' in text
    assert 'ai_model_drift_window_observations{feature="hrv",model="recovery"} 4.0' in text
    assert 'ai_model_drift_psi{feature="hrv",model="recovery"}' in text
