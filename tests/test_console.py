"""The web console in a real browser: Debian's Chromium driven by playwright-core (console/e2e.mjs)
against the facade, LiveKit and real worker processes on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from lingo_api import resources as r
from lingo_loopback.binaries import REPO_ROOT

from .helpers import ACME, auth
from .speech import SENTENCE, speech_wav

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("operator", "kubelet")]

CONSOLE = REPO_ROOT / "console"
ARTIFACTS = REPO_ROOT / ".artifacts"


def test_the_committed_bundle_is_built_from_the_source(tmp_path: Path):
    """webhook/lingo_webhook/console/console.js is what `make console` makes from console/src."""
    out = tmp_path / "console.js"
    build = json.loads((CONSOLE / "package.json").read_text())["scripts"]["build"]
    argv = [str(CONSOLE / "node_modules" / ".bin" / "esbuild"),
            *[a for a in build.split()[1:] if not a.startswith("--outfile")], f"--outfile={out}"]
    subprocess.run(argv, cwd=CONSOLE, check=True, capture_output=True)
    committed = REPO_ROOT / "webhook" / "lingo_webhook" / "console" / "console.js"
    assert out.read_bytes() == committed.read_bytes(), "console.js is stale: make console"


async def test_console_pages_carry_a_strict_content_security_policy(facade):
    async with aiohttp.ClientSession(base_url=facade) as http:
        async with http.get("/console", allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"] == "/console/"
        for path in ("/console/", "/console/console.js", "/console/console.css"):
            async with http.get(path) as response:
                assert response.status == 200
                policy = response.headers["Content-Security-Policy"]
                assert "script-src 'self';" in policy and "unsafe-inline" not in policy
                assert "frame-ancestors 'none'" in policy and response.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get("/console/../app.py") as response:
            assert response.status == 404
        html = await (await http.get("/console/")).text()
        assert "<script>" not in html and "style=" not in html  # nothing inline for the policy to allow
        # The tokens route the console joins with: the owner only.
        async with http.get("/session-storage/sessions/ss-nope/tokens", headers=auth(ACME)) as response:
            assert response.status == 404


async def test_publisher_speaks_and_the_subscriber_hears_spanish_in_the_browser(facade, cluster, facade_ns,
                                                                                tmp_path: Path):
    if not Path("/usr/bin/chromium").exists() or not (CONSOLE / "node_modules" / "playwright-core").exists():
        pytest.fail("Chromium or playwright-core is missing: run make setup", pytrace=False)
    samples, rate = speech_wav(tmp_path, SENTENCE)
    wav = tmp_path / "speech.wav"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "console.png"
    options = {"url": f"{facade}/console/", "clientId": ACME[0], "secret": ACME[1], "wav": str(wav),
               "screenshot": str(screenshot), "userDataDir": str(tmp_path / "chromium-profile")}
    browser = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node", str(CONSOLE / "e2e.mjs"), json.dumps(options), cwd=CONSOLE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(browser.communicate(), 300)
    assert browser.returncode == 0, stderr.decode()[-3000:]
    seen = json.loads(stdout.decode().strip().splitlines()[-1])
    if seen.get("session"):  # the page made it; the client's quota is shared with other tests
        async with aiohttp.ClientSession(base_url=facade) as http:
            async with http.delete(f"/session-storage/sessions/{seen['session']}", headers=auth(ACME)):
                pass
    # a string, so pytest shows all of it: the failed step, the pages' last console lines and the
    # end of the session's worker log (a .ci/run failed twice here, waiting for the transcript)
    if not seen["ok"]:
        session = seen.get("session") or "-"
        own = cluster.log_dir / f"pod-{facade_ns}-{r.worker_pod_name(session)}.log"
        claimed = [log for log in cluster.log_dir.glob(f"pod-{facade_ns}-*.log")  # or a pool's worker
                   if f"claimed for session {facade_ns}/{session} " in log.read_text(errors="replace")]
        logs = ([own] if own.exists() else []) + claimed
        tail = logs[0].read_text(errors="replace")[-4000:] if logs else "(no worker log found)"
        pytest.fail("\n".join([str(seen.get("error"))] + seen.get("logs", [])[-15:] + ["worker:", tail]),
                    pytrace=False)
    heard = " ".join(seen["english"]).lower()
    assert "friend" in heard or "weather" in heard, seen["english"]
    assert any("amigo" in line.lower() or "tiempo" in line.lower() for line in seen["spanish"]), seen["spanish"]
    assert seen["peak"] > 0.01  # the translation_es track was audible through WebAudio
    assert seen["subscriberPermissions"] == "edit, read"
    # a listener cannot speak, end the task or switch languages: each needs `write`
    assert seen["subscriberControls"] == {"microphone": True, "end": True, "setLanguages": True}
    assert seen["refusal"].startswith("microphone"), seen["refusal"]
    assert screenshot.stat().st_size > 10_000
