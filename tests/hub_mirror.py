"""A model hub mirror on loopback: folders served with the Hugging Face hub's HTTP layout, as
Artifactory, Nexus or a hub proxy serve it to huggingface_hub (HF_ENDPOINT).

  GET  /api/models/<repo>/revision/<rev>        the commit a revision is at, and the file list
  GET  /api/models/<repo>/tree/<commit>         every file with its checksums (?recursive=true)
  HEAD /<repo>/resolve/<commit>/<path>          X-Repo-Commit, ETag, size
  GET  /<repo>/resolve/<commit>/<path>          the file

Files at or above LFS_THRESHOLD bytes are served as LFS files (ETag and checksum: SHA-256), the
others as git blobs (ETag and checksum: git's blob SHA-1), as the hub does. `tamper` serves other
bytes than the checksums announce, to prove they are checked. Only 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_THRESHOLD = 10_000


class HubMirror:
    def __init__(self):
        self.repos: dict[str, tuple[str, Path]] = {}  # repo id -> (commit, folder)
        self.trees: dict[str, list[dict]] = {}
        self.tampered: set[tuple[str, str]] = set()
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, repo: str, folder: Path) -> str:
        """Serve `folder` as `repo` at revision main; its commit (changes with the contents)."""
        digest = hashlib.sha1()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
        self.repos[repo] = (digest.hexdigest(), folder)
        self.trees[repo] = self._tree(folder)
        return digest.hexdigest()

    def tamper(self, repo: str, path: str) -> None:
        self.tampered.add((repo, path))

    def __enter__(self) -> "HubMirror":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _tree(self, folder: Path) -> list[dict]:
        entries = []
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            entry = {"type": "file", "path": path.relative_to(folder).as_posix(), "size": len(data),
                     "oid": hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()}
            if len(data) >= LFS_THRESHOLD:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return entries

    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, value) -> None:
                self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

            def _route(self) -> None:
                path = unquote(urlsplit(self.path).path)
                mirror.requests.append(f"{self.command} {path}")
                if path.startswith("/api/models/"):
                    rest = path[len("/api/models/"):]
                    for repo, (commit, folder) in mirror.repos.items():
                        if rest.startswith(repo + "/revision/"):
                            return self._json({"id": repo, "modelId": repo, "sha": commit, "private": False,
                                               "siblings": [{"rfilename": e["path"]} for e in mirror.trees[repo]]})
                        if rest.startswith(repo + "/tree/"):
                            return self._json(mirror.trees[repo])
                    return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
                for repo, (commit, folder) in mirror.repos.items():
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix):
                        revision, _, name = path[len(prefix):].partition("/")
                        file = folder / name
                        if revision not in (commit, "main") or not file.is_file():
                            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
                        data = file.read_bytes()
                        entry = next(e for e in mirror.trees[repo] if e["path"] == name)
                        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
                        if (repo, name) in mirror.tampered:
                            data = data[:-1] + bytes([data[-1] ^ 1])
                        return self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{etag}"',
                                                      "Content-Type": "application/octet-stream"})
                self._send(404, b"", {"X-Error-Code": "RepoNotFound"})

            do_GET = do_HEAD = _route

        return Handler
