"""The dashboard in a real browser: starts the `switchboard` binary (demo providers, a SQLite
request log, a shadow rule), sends real traffic, then loads /dashboard in headless Chromium and
checks that the page loaded without console errors, drew its charts, and shows each model that
served with the cost the stats API gives. Keeps screenshots (laptop and phone width).

    python3 tests/browser/test_dashboard.py BINARY CHROMIUM SCREENSHOT_DIR

Standard library only.
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN_KEY = "dash-admin-key-<&>\"'"  # odd characters: the fragment and the header carry it as is
BINARY = CHROMIUM = OUT = None
PROC = BASE = TMP = None


def start_gateway():
    global PROC, BASE, TMP
    TMP = tempfile.mkdtemp(prefix="switchboard-dash-")
    with open(os.path.join(ROOT, "examples", "gateway.toml")) as f:
        config = f.read()
    db = os.path.join(TMP, "log.db")
    config = config.replace('path = "switchboard.db"', 'path = "%s"\nbodies = true' % db)
    config += (
        '\n[[routing.shadows]]\nsource = "fast"\ncandidate = "anthropic/claude-3-5-haiku"\n'
        "sample = 1.0\nmax_concurrency = 4\n"
    )
    path = os.path.join(TMP, "gateway.toml")
    with open(path, "w") as f:
        f.write(config)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.endswith("_BASE_URL")}
    env["SWITCHBOARD_ADMIN_KEY"] = ADMIN_KEY
    PROC = subprocess.Popen(
        [BINARY, "--config", path, "--listen", "127.0.0.1:0"],
        cwd=TMP, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    for line in PROC.stdout:
        lines.append(line)
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in PROC.stdout], daemon=True).start()
            BASE = m.group(1)
            return
        if len(lines) > 50:
            break
    PROC.kill()
    raise RuntimeError("gateway did not start:\n" + "".join(lines))


def request(method, path, body=None, headers=None, admin=False):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if admin:
        req.add_header("authorization", "Bearer " + ADMIN_KEY)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def chat(model, content, stream=False, headers=None, user=None):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if user:
        body["user"] = user
    return request("POST", "/v1/chat/completions", body, headers)


def traffic():
    ids = []
    for i in range(4):
        s, h, _ = chat("fast", "hello dashboard %d" % i, headers={"cache-control": "no-store"})
        assert s == 200, s
        ids.append(h.get("x-generation-id") or h.get("X-Generation-Id"))
    chat("fast", "hello dashboard 0")  # a cache miss, then a hit
    chat("fast", "hello dashboard 0")
    chat("balanced", "explain <script>alert(1)</script> & more", stream=True)
    chat("deep", "a deep question", headers={"x-switchboard-task": "analysis"})
    chat("long", "a long one")
    for u in ("ann", "bob", "cy", "dee"):
        chat("ab-chat", "split arm for " + u, user=u)
    chat("auto", "classify this", headers={"x-switchboard-task": "classify"})
    s, _, _ = chat("nobody/nothing", "unknown model")
    assert s == 404, s
    for gid, score in zip(ids[:2], (1.0, -0.5)):
        s, _, b = request("POST", "/api/v1/feedback", {"generation_id": gid, "score": score}, admin=True)
        assert s == 201, b


def stats(group_by):
    s, _, b = request("GET", "/api/v1/stats?group_by=" + group_by, admin=True)
    assert s == 200, b
    return json.loads(b)["data"]


def settle():
    """Waits until the log holds every row (the counts stop moving)."""
    last, since = None, time.time()
    deadline = time.time() + 20
    while time.time() < deadline:
        n = sum(r["requests"] for r in stats("model"))
        if n != last:
            last, since = n, time.time()
        elif time.time() - since > 1.5:
            return
        time.sleep(0.2)


def chromium(*args, url):
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
           "--user-data-dir=" + os.path.join(TMP, "profile-%d" % time.monotonic_ns()),
           "--virtual-time-budget=15000", *args, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def console_errors(stderr):
    bad = []
    for line in stderr.splitlines():
        if "CONSOLE" in line and ("Uncaught" in line or "console.error" in line or "Error" in line):
            bad.append(line)
        elif "Refused to" in line or "Content Security Policy" in line:
            bad.append(line)
    return bad


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        start_gateway()
        traffic()
        settle()

    @classmethod
    def tearDownClass(cls):
        if PROC:
            PROC.terminate()
            try:
                PROC.wait(timeout=10)
            except subprocess.TimeoutExpired:
                PROC.kill()
        if TMP:
            shutil.rmtree(TMP, ignore_errors=True)

    def test_headers(self):
        s, h, body = request("GET", "/dashboard")
        self.assertEqual(s, 200)
        h = {k.lower(): v for k, v in h.items()}
        self.assertIn("default-src 'none'", h["content-security-policy"])
        self.assertIn("script-src 'self'", h["content-security-policy"])
        self.assertEqual(h["x-content-type-options"], "nosniff")
        self.assertIn('src="dashboard.js"', body)
        s, h, _ = request("GET", "/dashboard.js")
        self.assertEqual(s, 200)
        self.assertTrue({k.lower(): v for k, v in h.items()}["content-type"].startswith("text/javascript"))
        # Without the key the data is refused: the page asks for it.
        s, _, _ = request("GET", "/api/v1/stats?group_by=model")
        self.assertEqual(s, 401)

    def test_page_in_chromium(self):
        want = {r["model"]: r["cost"] for r in stats("model") if r["model"]}
        self.assertIn("openai/gpt-4o-mini", want)
        self.assertIn("anthropic/claude-3-5-haiku", want, "the shadow copies are logged")
        url = BASE + "/dashboard#key=" + urllib.parse.quote(ADMIN_KEY, safe="")
        code, dom, err = chromium("--dump-dom", url=url)
        self.assertEqual(code, 0, err[-2000:])
        self.assertEqual(console_errors(err), [], "console errors")
        self.assertRegex(dom, r'<body[^>]*data-ready="1"', dom[-3000:])
        m = re.search(r'<pre id="summary"[^>]*>(.*?)</pre>', dom, re.S)
        self.assertIsNotNone(m, "a summary")
        summary = json.loads(html.unescape(m.group(1)))
        got = {r["model"]: r["cost"] for r in summary["models"] if r["model"]}
        self.assertEqual(set(got), set(want))
        for model, cost in want.items():
            self.assertAlmostEqual(got[model], cost, places=12, msg=model)
        charts = summary["charts"]
        self.assertGreater(charts["spend"], 0, summary)
        self.assertEqual(charts["traffic"], 4, summary)
        self.assertGreater(charts["latency"], 0, summary)
        self.assertGreater(summary["expensive"], 0)
        self.assertEqual(summary["shadow_groups"], 1)
        # Values are rendered as text: the prompt-like model label never becomes markup.
        self.assertNotIn("<script>alert", dom)
        for model in want:
            self.assertIn(model, dom)
        # The key left the address bar and no request carried it in a URL.
        self.assertNotIn(ADMIN_KEY, dom)

    def test_screenshots(self):
        os.makedirs(OUT, exist_ok=True)
        url = BASE + "/dashboard#key=" + urllib.parse.quote(ADMIN_KEY, safe="")
        for name, size in (("dashboard.png", "1280,1800"), ("dashboard-phone.png", "390,2600")):
            path = os.path.join(OUT, name)
            code, _, err = chromium("--screenshot=" + path, "--window-size=" + size, url=url)
            self.assertEqual(code, 0, err[-2000:])
            self.assertGreater(os.path.getsize(path), 10_000)
            print("screenshot: " + path, flush=True)


if __name__ == "__main__":
    BINARY, CHROMIUM, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
    del sys.argv[1:]
    unittest.main(verbosity=2)
