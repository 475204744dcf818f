"""The Dagster UI on the demo's instance, in a real headless Chromium: the real `dagster-webserver`, the pages a
user opens (global lineage, one benchmark's page), checked by what they render, with screenshots kept.

Chromium is driven over the Chrome DevTools Protocol with a small client on `websockets` (which the webserver's
uvicorn[standard] already installs): no chromedriver or Selenium. Skipped only when no Chromium binary is found.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import pytest

from quant_dag.cli.asset_lineage import lineage
from quant_dag.definitions import build_definitions
from quant_dag.home import REPO
from tests.support.demo_run import materialization

BENCHMARK = "benchmark/smollm2-135m/base/arithmetic"
VARIANT_BENCHMARK = "benchmark/smollm2-135m/w4a16-rtn-g32/arithmetic"
COMMUNITY_NUX = "Join the Dagster community"  # Dagster's first-visit modal on localhost
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
]
VIEWPORT = (1600, 1000)


def find_chromium() -> str | None:
    explicit = os.environ.get("QUANT_DAG_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM the process group started for `proc` (it was made a session leader), then SIGKILL what is left."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; children of the group may linger a moment
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (local URL)
        return resp.read()


class Cdp:
    """A minimal Chrome DevTools Protocol client for one page target: commands in order, events skipped."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()  # websockets 17 wants its connection entered as a context manager
        self.ws = self._stack.enter_context(connect(ws_url, max_size=None, open_timeout=30))
        self.next_id = 0

    def call(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg_id = self.next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"CDP {method} gave no answer in {timeout} s")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") != msg_id:
                continue  # an event, or the answer to an earlier call that timed out
            if "error" in reply:
                raise RuntimeError(f"CDP {method}: {reply['error']}")
            return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        self._stack.close()


@dataclass
class Browser:
    base_url: str
    cdp: Cdp
    shots: list[Path]  # folders every screenshot is written into

    def text(self) -> str:
        return self.cdp.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, name: str) -> list[Path]:
        data = base64.b64decode(self.cdp.call("Page.captureScreenshot", format="png")["data"])
        out = []
        for folder in self.shots:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
            out.append(folder / name)
        return out

    def wait_for(self, needles: list[str], timeout: float = 120, name: str = "page") -> str:
        """Poll the rendered text until every needle shows; on timeout keep a screenshot and say what was there."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        self.screenshot(f"timeout-{name}.png")
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"{name}: {missing} not rendered in {timeout} s; page text:\n{text[:3000]}")

    def open(self, path: str, needles: list[str], name: str, timeout: float = 120) -> str:
        self.cdp.call("Page.navigate", url=self.base_url + path)
        self.wait_for(needles, timeout, name)
        self.dismiss_nux()
        deadline = time.monotonic() + 30  # graph nodes fill in their live data after the layout: wait for it
        while "Loading..." in self.text() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)  # let the layout and late queries settle before the screenshot
        return self.wait_for(needles, 30, name)

    def scroll_to(self, text: str) -> bool:
        """Scroll the element showing exactly `text` to the middle of the viewport; True when it is then inside it."""
        return bool(
            self.cdp.evaluate(
                "(() => { const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); let n;"
                f" while ((n = w.nextNode())) {{ if (n.textContent.trim() === {json.dumps(text)}) break; }}"
                " if (!n) return false; const e = n.parentElement; e.scrollIntoView({block: 'center'});"
                " const r = e.getBoundingClientRect();"
                " return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; })()"
            )
        )

    def click_button(self, label: str) -> bool:
        """Click the visible button labelled `label` with real mouse events; False when there is none."""
        rect = self.cdp.evaluate(
            "(() => { const b = [...document.querySelectorAll('button')].find("
            f"e => e.innerText.trim() === {json.dumps(label)} && e.offsetParent !== null);"
            " if (!b) return null; const r = b.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        if not rect:
            return False
        for kind in ("mousePressed", "mouseReleased"):
            self.cdp.call("Input.dispatchMouseEvent", type=kind, x=rect["x"], y=rect["y"], button="left", clickCount=1)
        return True

    def dismiss_nux(self) -> None:
        """Dagster opens its community modal a second after the first page renders: skip it like a user would."""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and COMMUNITY_NUX not in self.text():
            time.sleep(0.3)
        if COMMUNITY_NUX not in self.text():
            return
        self.screenshot("community-modal.png")
        assert self.click_button("Skip"), "the community modal has no Skip button"
        deadline = time.monotonic() + 10
        while COMMUNITY_NUX in self.text():
            assert time.monotonic() < deadline, "the community modal did not close"
            time.sleep(0.3)


def start_chromium(binary: str, profile: Path) -> tuple[subprocess.Popen, Cdp]:
    profile.mkdir(parents=True, exist_ok=True)
    with open(profile.parent / "chromium.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
                "about:blank",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Chromium did not start (exit {proc.poll()}): {(profile.parent / 'chromium.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        pages: list[dict[str, Any]] = []
        while not pages:
            pages = [t for t in json.loads(http_get(f"http://127.0.0.1:{port}/json/list")) if t.get("type") == "page"]
            if time.monotonic() > deadline:
                raise RuntimeError("Chromium opened no page target")
            time.sleep(0.2)
        cdp = Cdp(pages[0]["webSocketDebuggerUrl"])
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            width=VIEWPORT[0],
            height=VIEWPORT[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        return proc, cdp
    except BaseException:
        stop_group(proc)
        raise


def start_webserver(home: Path, catalog: Path, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home / "dagster"),
        "QUANT_DAG_HOME": str(home),
        "QUANT_DAG_CATALOG": str(catalog),
    }
    cmd = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port), "-m", "quant_dag.definitions"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            info = json.loads(http_get(f"http://127.0.0.1:{port}/server_info"))
            if info.get("dagster_webserver_version"):
                return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_group(proc)
            raise RuntimeError(f"dagster-webserver did not come up (exit {proc.poll()}): {log.read_text()[-3000:]}")
        time.sleep(0.5)


def open_ui(home: Path, catalog: Path, work: Path) -> Iterator[Browser]:
    """The webserver on the instance at `home` and a Chromium page on it; both process groups end on exit."""
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium binary (apt install chromium, or set QUANT_DAG_CHROMIUM)")
    work.mkdir(parents=True, exist_ok=True)
    shots = [work / "screenshots"] + (
        [Path(os.environ["QUANT_DAG_SCREENSHOTS"])] if os.environ.get("QUANT_DAG_SCREENSHOTS") else []
    )
    server = chromium = None
    cdp = None
    try:
        port = free_port()
        server = start_webserver(home, catalog, port, work / "webserver.log")
        chromium, cdp = start_chromium(binary, work / "chromium-profile")
        yield Browser(f"http://127.0.0.1:{port}", cdp, shots)
    finally:
        if cdp is not None:
            cdp.close()
        stop_group(chromium)
        stop_group(server)


@pytest.fixture(scope="module")
def ui(request, tmp_path_factory) -> Iterator[Browser]:
    if find_chromium() is None:  # before the demo fixture: no 7-minute demo run for a test that cannot run
        pytest.skip("no Chromium binary (apt install chromium, or set QUANT_DAG_CHROMIUM)")
    _, home, cat, _ = request.getfixturevalue("demo")
    yield from open_ui(home, cat.root, tmp_path_factory.mktemp("ui"))


def asset_links(ui: Browser) -> list[str]:
    """Where the page's asset links point (node labels show only a key's last part; links carry the whole key)."""
    return ui.cdp.evaluate(
        "[...new Set([...document.querySelectorAll('a')].map(a => a.getAttribute('href')))]"
        ".filter(h => h && h.startsWith('/assets/'))"
    )


def shoot(ui: Browser, name: str) -> None:
    for path in ui.screenshot(name):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, path
    assert COMMUNITY_NUX not in ui.text(), f"{name}: the community modal covers the page"


def global_lineage_path(key: str, groups: list[str]) -> str:
    """Global asset lineage filtered to `key` and everything upstream of it (Dagster's selection syntax:
    `+key:"..."`), with those groups expanded so the assets themselves are drawn, not only their groups."""
    expanded = ",".join(f"global@global:{g}" for g in groups)  # group ids without per-location grouping
    return "/asset-groups~" + quote(f'+key:"{key}"', safe="") + "/?expanded=" + quote(expanded, safe=",@:")


def test_global_lineage_shows_the_upstream_chain(ui: Browser, demo):
    _, home, cat, instance = demo
    defs = build_definitions(catalog=cat.root, home=home)
    graph = defs.resolve_asset_graph()
    groups = sorted({graph.get(k).group_name for k in graph.get_all_asset_keys()})
    ui.open("/asset-groups", ["Global asset lineage", *groups], "global-lineage")
    shoot(ui, "global-lineage.png")

    rows = lineage(instance, defs, VARIANT_BENCHMARK)
    materializable = sum(1 for r in rows if not r["observable_source"])
    chain_groups = sorted({graph.get(dg.AssetKey.from_user_string(r["key"])).group_name for r in rows})
    # node labels are the keys' last parts: checkpoint smollm2-135m -> quantized w4a16-rtn-g32 -> endpoints base and
    # w4a16-rtn-g32 -> benchmark arithmetic; the selection holds exactly the chain that `quant-dag lineage` lists
    labels = ["smollm2-135m", "w4a16-rtn-g32", "base", "arithmetic"]
    text = ui.open(
        global_lineage_path(VARIANT_BENCHMARK, chain_groups),
        [*chain_groups, *labels, f"Materialize all ({materializable})"],
        "global-lineage-upstream",
    )
    shoot(ui, "global-lineage-upstream.png")
    assert "basic-mc" not in text and "w8a16-rtn-g64" not in text and "summaries" not in text  # nothing outside it


def test_benchmark_page_shows_upstream_and_metadata(ui: Browser, demo):
    _, _, _, instance = demo
    run_id, meta = materialization(instance, BENCHMARK)
    upstream = "endpoint / smollm2-135m / base"
    needles = [
        "Upstream assets",
        upstream,
        "dataset_revision",
        meta["dataset_revision"],
        "vllm_version",
        meta["vllm_version"],
    ]
    ui.open(f"/assets/{BENCHMARK}", needles, "benchmark-overview")
    shoot(ui, "benchmark-overview.png")  # the metadata table is at the top of the overview
    assert "/assets/endpoint/smollm2-135m/base" in asset_links(ui)
    assert ui.scroll_to("Upstream assets"), "the overview's lineage section could not be scrolled into view"
    time.sleep(0.5)
    shoot(ui, "benchmark-overview-upstream.png")

    ui.open(
        f"/assets/{BENCHMARK}?view=events",
        ["Materialized in run", run_id[:8], "dataset_revision", meta["checkpoint_id"]],
        "benchmark-events",
    )
    shoot(ui, "benchmark-events.png")

    path = f"/assets/{BENCHMARK}?view=lineage&lineageScope=upstream&lineageDepth=10"
    text = ui.open(
        path,
        ["Upstream", "checkpoints", "endpoints", "benchmarks", "smollm2-135m", "base", "arithmetic"],
        "benchmark-lineage",
    )
    shoot(ui, "benchmark-upstream-lineage.png")
    assert text.count("Materialized") >= 3, text  # checkpoint, endpoint and benchmark nodes, each with its status
    links = asset_links(ui)
    for key in ("endpoint/smollm2-135m/base", "checkpoint/smollm2-135m"):
        assert any(h.startswith(f"/assets/{key}") for h in links), (key, links)
