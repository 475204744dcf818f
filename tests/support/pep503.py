"""Test helpers: tiny hand-made wheels and a PEP 503 index served on 127.0.0.1 (no network, no setuptools)."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import shutil
import threading
import zipfile
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(data: bytes) -> str:
    # RECORD format pip checks: sha256=<urlsafe base64 without padding>,<size>
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(dest: Path, name: str, version: str, *, metadata_version: str | None = None) -> Path:
    """Write `{name}-{version}-py3-none-any.whl` into `dest`: one module with `__version__`.

    metadata_version: put a different version into METADATA than in the file name (a broken wheel).
    """
    dest.mkdir(parents=True, exist_ok=True)
    dist = re.sub(r"[-_.]+", "_", name)  # wheel file names and dist-info use '_' for any separator run
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {metadata_version or version}\nSummary: test wheel\n"
        ).encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests.support.pep503\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    record += f"{info}/RECORD,,\n"
    path = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name_in_zip, data in files.items():
            zf.writestr(name_in_zip, data)
        zf.writestr(f"{info}/RECORD", record)
    return path


def _project_of(filename: str) -> str:
    # wheel names have no '-' inside the name part; sdists end with -<version>
    name = filename.split("-", 1)[0] if filename.endswith(".whl") else filename.rsplit("-", 1)[0]
    return _normalize(name)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project_page(files: Iterable[Path], href_prefix: str) -> str:
    """A PEP 503 project page; '+' of local versions is percent-encoded as real indexes do."""
    links = "".join(
        f'<a href="{href_prefix}{quote(f.name)}#sha256={_sha256(f)}">{html.escape(f.name)}</a><br/>\n'
        for f in sorted(files)
    )
    return f"<!DOCTYPE html><html><body>\n{links}</body></html>\n"


def write_file_index(root: Path, wheels: Iterable[Path]) -> str:
    """A static file:// index in `root` (root/index.html, root/<project>/index.html, root/files/*); returns its URL."""
    files_dir = root / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    by_project: dict[str, list[Path]] = {}
    for wheel in wheels:
        copy = files_dir / wheel.name
        shutil.copyfile(wheel, copy)
        by_project.setdefault(_project_of(wheel.name), []).append(copy)
    for project, files in by_project.items():
        (root / project).mkdir(exist_ok=True)
        (root / project / "index.html").write_text(project_page(files, "../files/"))
    root_links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(by_project))
    (root / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{root_links}</body></html>\n")
    return root.resolve().as_uri()


class SimpleIndex:
    """A PEP 503 index over the files in `directory`, served by http.server in a thread.

    /simple/ lists projects, /simple/<project>/ lists files (with #sha256=), /files/<name> serves them.
    `malformed()` makes project pages garbage, `fail(500)` answers every request with that status,
    `heal()` undoes both. `requests` counts GETs so tests can tell whether the index was asked.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.requests = 0
        self._status: int | None = None
        self._garbage = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- controls
    def add_wheel(self, wheel: Path) -> Path:
        copy = self.directory / wheel.name
        if wheel.resolve() != copy.resolve():
            shutil.copyfile(wheel, copy)
        return copy

    def malformed(self) -> None:
        self._garbage = True

    def fail(self, status: int = 500) -> None:
        self._status = status

    def heal(self) -> None:
        self._garbage = False
        self._status = None

    @property
    def url(self) -> str:
        assert self._server is not None, "use SimpleIndex as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}/simple"

    # -- serving
    def _files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.suffix == ".whl" or p.name.endswith((".tar.gz", ".zip")))

    def _respond(self, path: str) -> tuple[int, str, bytes]:
        with self._lock:
            self.requests += 1
        if self._status is not None:
            return self._status, "text/plain", b"injected failure\n"
        parts = [unquote(p) for p in path.split("?", 1)[0].split("/") if p]
        if parts == ["simple"]:
            projects = sorted({_project_of(f.name) for f in self._files()})
            links = "".join(f'<a href="{p}/">{p}</a>\n' for p in projects)
            return 200, "text/html", f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
        if len(parts) == 2 and parts[0] == "simple":
            files = [f for f in self._files() if _project_of(f.name) == _normalize(parts[1])]
            if not files:
                return 404, "text/plain", b"not found\n"
            if self._garbage:
                return 200, "text/html", b"\x00\x01 this is not an index {garbage}\n"
            return 200, "text/html", project_page(files, "../../files/").encode()
        if len(parts) == 2 and parts[0] == "files" and (self.directory / parts[1]).is_file():
            return 200, "application/octet-stream", (self.directory / parts[1]).read_bytes()
        return 404, "text/plain", b"not found\n"

    def __enter__(self) -> SimpleIndex:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                status, ctype, body = index._respond(self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
