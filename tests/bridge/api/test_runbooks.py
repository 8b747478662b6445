"""GET /runbooks: docs/runbooks.md as HTML with one anchor per alert section."""

import base64

from bridge.api.runbooks import RUNBOOKS, anchor, to_html
from tests.bridge.conftest import TOKENS, auth

SAMPLE = """# Runbooks

Intro with `code` and a [link](https://example.com/x).

## ApiLatencyP95High

What it means: p95 is above **2 s**.

- check the `route:http_server_request_duration_seconds:p95_5m` panel
- roll back <script>alert(1)</script>

```
kubectl rollout undo
```

## Watchdog

Always firing.
"""


def test_sections_get_anchors_by_lowercase_alertname():
    html = to_html(SAMPLE)
    assert '<h2 id="apilatencyp95high">ApiLatencyP95High</h2>' in html
    assert '<h2 id="watchdog">Watchdog</h2>' in html
    assert "<li>check the <code>route:http_server_request_duration_seconds:p95_5m</code>" in html
    assert '<a href="https://example.com/x">link</a>' in html
    assert "<strong>2 s</strong>" in html
    assert "<pre><code>\nkubectl rollout undo\n</code></pre>" in html


def test_html_is_escaped():
    html = to_html(SAMPLE + "\n[bad](javascript:alert(1))\n")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "javascript:" not in html


def test_anchor():
    assert anchor("NodeFilesystemFillingUp") == "nodefilesystemfillingup"


def test_runbooks_need_a_token_a_browser_is_asked_for_it(client):
    refused = client.get("/runbooks")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Pulse runbooks"'
    assert client.get("/runbooks", headers=auth("coach")).status_code == 403
    # What a browser sends after the prompt: any user name, the token as password.
    login = base64.b64encode(f"me:{TOKENS['analyst']}".encode()).decode()
    assert client.get("/runbooks", headers={"Authorization": f"Basic {login}"}
                      ).status_code == 200


def test_the_bridge_serves_the_committed_runbooks(client):
    resp = client.get("/runbooks", headers=auth("engineer"))
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    text = RUNBOOKS.read_text()
    for line in text.splitlines():
        if line.startswith("## "):
            assert f'id="{anchor(line[3:])}"' in resp.get_data(as_text=True)
