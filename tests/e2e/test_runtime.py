"""Nightly runtimes: the PEP 503 client against a real index on 127.0.0.1, and cached venv installs with pip.

Light on purpose (a few pip runs of a 1 KB wheel); pip is isolated from this machine's pip config.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from packaging.tags import Tag

from quant_dag.runtime import envs
from quant_dag.runtime.envs import (
    RuntimeInstallFailed,
    ensure_runtime,
    installed_version,
    last_good_runtime,
    runtime_dir,
)
from quant_dag.runtime.index import Build, IndexUnavailable, list_builds, newest
from tests.support.pep503 import SimpleIndex, build_wheel, write_file_index

PROJECT = "vllm-nightly-probe"
V0, DEV5, DEV7 = "0.11.0", "0.11.1rc1.dev5+gabc1234", "0.11.1rc1.dev7+gdef5678"
# only the local index counts: no machine pip config, no cache, no dependencies
PIP_ARGS = ["--no-deps", "--no-cache-dir"]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wheels")
    out = {v: build_wheel(d, PROJECT, v) for v in (V0, DEV5, DEV7)}
    out["broken"] = build_wheel(d / "broken", PROJECT, "0.11.2", metadata_version="0.11.1")
    return out


@pytest.fixture
def index(tmp_path, wheels):
    with SimpleIndex(tmp_path / "index") as idx:
        idx.add_wheel(wheels[V0])
        idx.add_wheel(wheels[DEV5])
        yield idx


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/simple"


# ---------------------------------------------------------------- index client


def test_newest_changes_when_a_wheel_is_added(index, wheels):
    builds = list_builds(index.url, "VLLM_Nightly.Probe")  # PEP 503 normalization of the asked name
    assert [b.version for b in builds] == [V0, DEV5]
    top = newest(builds)
    assert top.version == DEV5
    assert top.filename == wheels[DEV5].name and "+" in top.filename  # %2B in the href decoded
    assert top.url.startswith("http://127.0.0.1:") and "#" not in top.url
    assert top.sha256 == hashlib.sha256(wheels[DEV5].read_bytes()).hexdigest()

    index.add_wheel(wheels[DEV7])
    assert newest(list_builds(index.url, PROJECT)).version == DEV7
    assert [b.version for b in list_builds(index.url, PROJECT, include_prereleases=False)] == [V0]


def test_pep440_order_of_nightlies():
    def b(v: str) -> Build:
        return Build(v, f"vllm-{v}-py3-none-any.whl", f"https://x/vllm-{v}-py3-none-any.whl")

    order = [
        "0.11.0",
        "0.11.0.post1",
        "0.11.1rc1.dev5+gabc",
        "0.11.1rc1.dev7",
        "0.11.1rc1.dev7+gdef",
        "0.11.1rc1",
        "0.11.1rc2.dev99+gfff",
        "0.11.1rc2.dev123+g1a2b3c4d5",
        "0.11.1rc2",
        "0.11.1",
    ]
    for i in range(1, len(order) + 1):
        assert newest([b(v) for v in reversed(order[:i])]).version == order[i - 1]


def test_newest_prefers_a_wheel_for_this_machine():
    v = "0.11.1rc2.dev123+g1a2b3c4d5"
    exotic = Build(v, f"vllm-{v}-cp38-abi3-win_arm64.whl", "https://x/a")
    pure = Build(v, f"vllm-{v}-py3-none-any.whl", "https://x/b")
    sdist = Build(v, f"vllm-{v}.tar.gz", "https://x/c")
    older = Build("0.11.0", "vllm-0.11.0-py3-none-any.whl", "https://x/d")
    mine = [Tag("py3", "none", "any")]
    assert newest([sdist, exotic, pure, older], platform_tags=mine) == pure
    assert newest([sdist, exotic, older], platform_tags=mine) == exotic  # any wheel beats the sdist
    assert newest([sdist, older], platform_tags=mine) == sdist
    assert newest([sdist, exotic, pure]) == pure  # the real sys_tags() of this machine
    with pytest.raises(ValueError):
        newest([])


def test_file_index(tmp_path, wheels):
    url = write_file_index(tmp_path / "simple", [wheels[V0], wheels[DEV5]])
    assert url.startswith("file://")
    builds = list_builds(url, PROJECT)
    assert newest(builds).version == DEV5
    assert all(b.url.startswith("file://") and Path(url2pathname(urlparse(b.url).path)).is_file() for b in builds)
    with pytest.raises(IndexUnavailable) as err:
        list_builds(url, "not-there")
    assert err.value.kind == "not_found" and "not-there" in str(err.value)
    with pytest.raises(IndexUnavailable) as err:
        list_builds((tmp_path / "nowhere").as_uri(), PROJECT)
    assert err.value.kind == "unreachable"


def test_unreachable_index_fails_fast_naming_the_url():
    url = closed_port_url()
    t0 = time.monotonic()
    with pytest.raises(IndexUnavailable) as err:
        list_builds(url, PROJECT, timeout_s=1)
    assert time.monotonic() - t0 < 20  # the 1 s timeout applies (none would hang); loose bound: a busy machine
    assert err.value.kind == "unreachable" and url in str(err.value) and "timeout 1s" in str(err.value)

    # accepts the connection, never answers: the read times out
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/simple"
        t0 = time.monotonic()
        with pytest.raises(IndexUnavailable) as err:
            list_builds(url, PROJECT, timeout_s=0.3)
        assert time.monotonic() - t0 < 20
    assert err.value.kind == "unreachable" and "timed out after 0.3s" in str(err.value) and url in str(err.value)


def test_malformed_pages_and_http_errors(index, tmp_path):
    index.malformed()
    with pytest.raises(IndexUnavailable) as err:
        list_builds(index.url, PROJECT)
    assert err.value.kind == "malformed" and f"{index.url}/{PROJECT}/" in str(err.value)

    index.heal()
    index.fail(500)
    with pytest.raises(IndexUnavailable) as err:
        list_builds(index.url, PROJECT)
    assert err.value.kind == "http" and "HTTP 500" in str(err.value) and index.url in str(err.value)

    index.heal()
    with pytest.raises(IndexUnavailable) as err:
        list_builds(index.url, "other-project")
    assert err.value.kind == "not_found"

    # anchors that look like files of the project but none parses -> malformed; only other projects -> empty
    root = tmp_path / "hand"
    (root / PROJECT).mkdir(parents=True)
    page = root / PROJECT / "index.html"
    page.write_text(
        '<a href="vllm_nightly_probe-not.a.version-py3-none-any.whl">x</a><a href="vllm_nightly_probe-x-y.tar.gz">y</a>'
    )
    with pytest.raises(IndexUnavailable) as err:
        list_builds(root.as_uri(), PROJECT)
    assert err.value.kind == "malformed" and "none of the 2 file names" in str(err.value)
    page.write_text('<a href="other-1.0-py3-none-any.whl">x</a><a href="README.txt">r</a>')
    with pytest.raises(IndexUnavailable) as err:
        list_builds(root.as_uri(), PROJECT)
    assert err.value.kind == "empty" and "no wheel or sdist" in str(err.value)


# ---------------------------------------------------------------- runtimes


@pytest.fixture(scope="module")
def served(tmp_path_factory, wheels):
    """One index and one home for the runtime tests: a good runtime is built once and reused."""
    with SimpleIndex(tmp_path_factory.mktemp("rt-index")) as idx:
        for key in (V0, DEV5, DEV7, "broken"):
            idx.add_wheel(wheels[key])
        yield idx, tmp_path_factory.mktemp("home")


def build_of(idx: SimpleIndex, version: str) -> Build:
    return next(b for b in list_builds(idx.url, PROJECT) if b.version == version)


def install(idx: SimpleIndex, home: Path, build: Build, **kw):
    return ensure_runtime(home, PROJECT, build, index_url=idx.url, extra_pip_args=PIP_ARGS, isolated_pip=True, **kw)


def test_ensure_runtime_installs_then_caches(served):
    idx, home = served
    lines: list[str] = []
    t0 = time.monotonic()
    rt = install(idx, home, build_of(idx, DEV5), log=lines.append)
    built_s = time.monotonic() - t0
    assert rt.root == runtime_dir(home, PROJECT, DEV5) and rt.root.name == "vllm-nightly-probe-0.11.1rc1.dev5_gabc1234"
    assert rt.python.is_file() and installed_version(rt.python, PROJECT) == DEV5 == rt.version
    ready = json.loads((rt.root / ".ready").read_text())
    assert ready["version"] == DEV5 and ready["filename"].endswith(".whl") and ready["python"] == str(rt.python)
    assert any("pip" in line and "install" in line for line in lines) and (rt.root / "install.log").is_file()

    # cached: no pip, no index request (even a dead index URL is fine), fast
    lines.clear()
    asked = idx.requests
    t0 = time.monotonic()
    again = ensure_runtime(home, PROJECT, build_of(idx, DEV5), index_url=closed_port_url(), log=lines.append)
    cached_s = time.monotonic() - t0
    assert again == rt and lines == [] and idx.requests == asked + 1  # +1: build_of listed the index
    assert built_s > cached_s  # no pip and no index request (above) is the real check, not a time bound
    assert last_good_runtime(home, PROJECT) == rt


def test_stale_dir_is_rebuilt_and_concurrent_builders_share_one_install(served):
    idx, home = served
    install(idx, home, build_of(idx, DEV5))  # ensure the previous runtime exists when run alone
    target = runtime_dir(home, PROJECT, DEV7)
    target.mkdir(parents=True)
    (target / "junk-from-a-killed-build").write_text("x")  # no .ready: garbage

    build = build_of(idx, DEV7)
    logs: list[list[str]] = [[], []]
    results: list[object] = [None, None]

    def worker(i: int) -> None:
        try:
            results[i] = install(idx, home, build, log=logs[i].append)
        except Exception as exc:  # surfaced by the asserts below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results[0] == results[1] and isinstance(results[0], envs.Runtime), results
    assert sum(any("pip" in ln and " install " in ln for ln in lg) for lg in logs) == 1  # one pip run
    assert not (target / "junk-from-a-killed-build").exists()
    assert last_good_runtime(home, PROJECT).version == DEV7


@pytest.mark.parametrize(
    ("version", "kw", "reason"),
    [
        ("0.11.2", {}, "pip install exited"),  # file says 0.11.2, METADATA says 0.11.1: pip refuses it
        ("0.12.0", {}, "pip install exited"),  # not on the index at all
        ("0.11.0", {"timeout_s": 0.4}, "timed out"),  # pip cannot even start in time
    ],
    ids=["broken-wheel", "missing-version", "timeout"],
)
def test_failed_install_leaves_nothing_and_keeps_last_good(served, version, kw, reason):
    idx, home = served
    good = install(idx, home, build_of(idx, DEV5))  # cached after the first test
    build = Build(version, f"vllm_nightly_probe-{version}-py3-none-any.whl", f"{idx.url}/x")
    with pytest.raises(RuntimeInstallFailed) as err:
        install(idx, home, build, **kw)
    msg = str(err.value)
    assert version in msg and reason in msg and "last 30 lines" in msg
    target = runtime_dir(home, PROJECT, version)
    assert not target.exists()
    assert not list((home / "runtimes").glob(f".{target.name}.install.log"))  # moved to failed/
    records = [json.loads(ln) for ln in (home / "runtimes" / "failed.jsonl").read_text().splitlines()]
    assert records[-1]["version"] == version and reason in records[-1]["reason"]
    assert Path(records[-1]["log"]).is_file()
    last = last_good_runtime(home, PROJECT)
    assert last is not None and last.version in (DEV5, DEV7) and last.python.is_file()
    assert installed_version(good.python, PROJECT) == DEV5  # the previous runtime still works


def test_verification_mismatch_is_a_failure(served, monkeypatch):
    idx, home = served
    monkeypatch.setattr(envs, "installed_version", lambda python, project, **kw: "9.9.9")
    with pytest.raises(RuntimeInstallFailed, match="verification failed.*9.9.9"):
        install(idx, home, build_of(idx, V0))
    assert not runtime_dir(home, PROJECT, V0).exists()
