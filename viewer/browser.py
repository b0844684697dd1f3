"""Screenshots of the viewer's page in a headless Chromium (tests, the README's picture).

Chromium runs with a DevTools port; the page is opened, and the screenshot is taken once
``ready()`` says so (e.g. the server has sent its finest image) or after ``timeout`` seconds.
WebGL comes from SwiftShader (software), so no GPU or display is needed.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium():
    """Path of a Chromium executable, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _devtools_page(port, deadline):
    """WebSocket URL of the first page target of the browser's DevTools port."""
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("chromium's DevTools port did not answer")


def screenshot(url, path, size=(800, 600), ready=lambda: True, timeout=30.0, settle=0.5, chromium=None, script=None):
    """Open ``url`` in headless Chromium and write a PNG screenshot of ``size`` ``(W, H)`` to ``path``.

    Args:
        ready: polled every 0.1 s after the page opens; the screenshot is taken ``settle`` seconds
            after it first returns True (the browser needs a moment to draw what arrived).
        script: JavaScript run in the page just before the screenshot (e.g. to close a notice).
    Returns:
        True when ``ready()`` became true before ``timeout``, else False (a screenshot is written anyway).
    """
    from websockets.sync.client import connect  # a dependency of viser

    from viewer.server import free_port

    chromium = chromium or find_chromium()
    port = free_port()
    profile = tempfile.mkdtemp(prefix="viewer-chromium-")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
           "--enable-unsafe-swiftshader", "--no-first-run", "--mute-audio", f"--user-data-dir={profile}",
           f"--remote-debugging-port={port}", f"--window-size={size[0]},{size[1]}", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        with connect(_devtools_page(port, deadline), max_size=None, open_timeout=10) as ws:
            msg_id = 0

            def call(method, **params):
                nonlocal msg_id
                msg_id += 1
                ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
                while True:
                    reply = json.loads(ws.recv(timeout=max(1.0, deadline - time.time() + 10)))
                    if reply.get("id") == msg_id:
                        return reply.get("result", {})

            call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                 mobile=False)
            call("Page.navigate", url=url)
            ok = False
            while time.time() < deadline:
                if ready():
                    ok = True
                    break
                time.sleep(0.1)
            time.sleep(settle)
            if script:
                call("Runtime.evaluate", expression=script)
                time.sleep(0.3)
            data = call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return ok
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
