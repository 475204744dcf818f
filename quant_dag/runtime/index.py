"""A small PEP 503 "simple" index client: list a project's files and pick the newest build.

Only `packaging` and `httpx`; no pip internals. Works on http(s):// indexes and on file:// indexes
(a directory per project holding an index.html), which is how this machine's local indexes look.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse
from urllib.request import url2pathname

import httpx
from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

SDIST_SUFFIXES = (".tar.gz", ".zip")
# PEP 691 lets a server answer JSON; we parse HTML, so ask for it explicitly.
ACCEPT = "application/vnd.pypi.simple.v1+html, text/html;q=0.9"


class IndexUnavailable(RuntimeError):
    """The index could not give us a usable build list. `kind` says why, `url` what was asked.

    kind: "unreachable" (refused, DNS, timeout), "not_found" (HTTP 404 / no index.html for the project),
    "http" (any other status than 200), "malformed" (not an HTML page with anchors, or every file name
    unparsable), "empty" (no wheel/sdist of the project).
    """

    def __init__(self, kind: str, url: str, detail: str) -> None:
        super().__init__(f"package index {kind}: {url}: {detail}")
        self.kind = kind
        self.url = url


@dataclass(frozen=True)
class Build:
    """One file of one release on the index."""

    version: str
    filename: str
    url: str  # absolute, fragment stripped
    sha256: str | None = None

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    @property
    def tags(self) -> frozenset[Tag]:
        return frozenset(parse_wheel_filename(self.filename)[3]) if self.is_wheel else frozenset()


def normalize(project: str) -> str:
    """PEP 503 name normalization: lowercase, runs of -_. become one -."""
    return re.sub(r"[-_.]+", "-", project).lower()


def project_url(index_url: str, project: str) -> str:
    return index_url.rstrip("/") + "/" + normalize(project) + "/"


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            a = dict(attrs)
            if a.get("href"):
                self.anchors.append(a)


def _fetch(url: str, timeout_s: float) -> tuple[str, str]:
    """Return (page text, the URL relative links resolve against)."""
    if urlparse(url).scheme == "file":
        return _fetch_file(url), url
    try:
        # follow_redirects: an index may redirect `/name` <-> `/name/`; relative links follow the final URL
        with httpx.Client(timeout=timeout_s, follow_redirects=True, headers={"Accept": ACCEPT}) as client:
            resp = client.get(url)
    except httpx.TimeoutException as exc:
        raise IndexUnavailable("unreachable", url, f"timed out after {timeout_s:g}s ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:  # refused, DNS, TLS, reset
        raise IndexUnavailable(
            "unreachable", url, f"{type(exc).__name__}: {exc or 'connection failed'} (timeout {timeout_s:g}s)"
        ) from exc
    if resp.status_code == 404:
        raise IndexUnavailable("not_found", url, "HTTP 404: project not on this index")
    if resp.status_code != 200:
        raise IndexUnavailable("http", url, f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip())
    ctype = resp.headers.get("content-type", "")
    if "json" in ctype:
        raise IndexUnavailable("malformed", url, f"answered {ctype!r}, expected an HTML simple page")
    return resp.text, str(resp.url)


def _fetch_file(url: str) -> str:
    directory = Path(url2pathname(urlparse(url).path))
    if not directory.parent.is_dir():
        raise IndexUnavailable("unreachable", url, f"index directory {directory.parent} does not exist")
    page = directory / "index.html"
    if not page.is_file():
        raise IndexUnavailable("not_found", url, f"{page} not found: project not on this index")
    try:
        return page.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise IndexUnavailable("unreachable", url, f"cannot read {page}: {exc}") from exc


def _parse_file(filename: str) -> tuple[str, Version]:
    """(normalized name, version) of a wheel or sdist file name; raises ValueError if unparsable."""
    if filename.endswith(".whl"):
        name, version, _, _ = parse_wheel_filename(filename)
        return str(name), version
    name, version = parse_sdist_filename(filename)
    return str(name), version


def list_builds(
    index_url: str, project: str, *, timeout_s: float = 10, include_prereleases: bool = True
) -> list[Build]:
    """Every wheel and sdist of `project` on a PEP 503 index, sorted by version (oldest first).

    Yanked files (PEP 592 `data-yanked`) are skipped: pip would not pick them either.
    """
    url = project_url(index_url, project)
    text, base = _fetch(url, timeout_s)
    parser = _Anchors()
    try:
        parser.feed(text)
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is only for truly broken input
        raise IndexUnavailable("malformed", url, f"unparsable HTML ({exc})") from exc
    if not parser.anchors:
        snippet = text.strip()[:80].replace("\n", " ")
        raise IndexUnavailable("malformed", url, f"no <a href> anchors in the page (starts {snippet!r})")
    if parser.base:
        base = urljoin(base, parser.base)

    want = canonicalize_name(project)
    builds: list[Build] = []
    candidates = unparsable = prerelease = 0
    for anchor in parser.anchors:
        href = str(anchor["href"])
        absolute, fragment = urldefrag(urljoin(base, href))
        # real indexes percent-encode '+' of local versions (vLLM nightlies: %2Bg1a2b3c4)
        filename = unquote(urlparse(absolute).path.rsplit("/", 1)[-1])
        if not filename.endswith((".whl", *SDIST_SUFFIXES)):
            continue
        candidates += 1
        try:
            name, version = _parse_file(filename)
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion, ValueError):
            unparsable += 1
            continue
        if name != want or "data-yanked" in anchor:
            continue
        if version.is_prerelease and not include_prereleases:
            prerelease += 1
            continue
        sha256 = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
        builds.append(Build(version=str(version), filename=filename, url=absolute, sha256=sha256))

    if not builds:
        if candidates and unparsable == candidates:
            raise IndexUnavailable("malformed", url, f"none of the {candidates} file names parse as wheel/sdist")
        extra = f" ({prerelease} pre-release builds excluded)" if prerelease else ""
        raise IndexUnavailable("empty", url, f"no wheel or sdist for {want} among {len(parser.anchors)} links{extra}")
    builds.sort(key=lambda b: b.parsed_version)
    return builds


def newest(builds: Iterable[Build], platform_tags: Iterable[Tag] | None = None) -> Build:
    """The build of the highest version; among its files a wheel for this machine, else any wheel, else an sdist.

    Version ordering is PEP 440 (packaging.Version): 0.11.0 < 0.11.1rc1.dev5+gabc < 0.11.1rc1.dev7+gdef < 0.11.1rc1.
    """
    builds = list(builds)
    if not builds:
        raise ValueError("no builds to choose from")
    top = max(b.parsed_version for b in builds)
    files = [b for b in builds if b.parsed_version == top]
    # rank of each tag: sys_tags() yields the most specific (preferred) tags first
    rank = {tag: i for i, tag in enumerate(sys_tags() if platform_tags is None else platform_tags)}
    compatible = [
        (min(rank[t] for t in b.tags if t in rank), i)
        for i, b in enumerate(files)
        if b.is_wheel and any(t in rank for t in b.tags)
    ]
    if compatible:
        return files[min(compatible)[1]]
    wheels = [b for b in files if b.is_wheel]
    return (wheels or files)[0]
