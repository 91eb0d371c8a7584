"""A small Hub-API server (standard library only) that the stock `huggingface_hub` client talks to over real HTTP.

It is the test stand-in for huggingface.co: no installable server accepts uploads here (`hf-local-hub` 3.0.0 ships
no server binary; `olah` is a read-only mirror). It implements the endpoints the client calls for `create_repo`,
`upload_folder` (preupload, LFS batch + PUT, NDJSON commit), `hf_hub_download`/`snapshot_download` (`resolve` with
`X-Repo-Commit`, ETag, Content-Length and Range; `api/models/.../revision/...` and `.../tree/...`) and `ModelCard` (`validate-yaml`).
Every request is recorded (method, path, whether it carried the expected bearer token) so tests can count commits.
Writes need `Authorization: Bearer <token>`; private repos need it for reads too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    private: bool = False
    commits: list[dict] = field(default_factory=list)  # each {"oid", "message", "files": {path: bytes}}

    @property
    def files(self) -> dict[str, bytes]:
        return self.commits[-1]["files"] if self.commits else {}

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


class LocalHub:
    """`with LocalHub(token) as hub:` serves on 127.0.0.1 at a free port; `hub.endpoint` is its URL."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.upload_keys: dict[str, str] = {}
        self.requests: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def commits(self, repo_id: str) -> list[dict]:
        return self.repos[repo_id].commits


REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"


def _make_handler(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        # ------------------------------------------------------------------ plumbing
        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
            self.send_response(status)
            headers = {"Content-Type": "application/json", **(headers or {})}
            headers.setdefault("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if body and not head and self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, data, headers: dict | None = None):
            self._send(status, json.dumps(data).encode(), headers)

        def _error(self, status: int, code: str, message: str):
            self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

        def _record(self):
            with hub.lock:
                hub.requests.append((self.command, urlsplit(self.path).path, self._authorized()))

        def _repo(self, repo_id: str, write: bool = False) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and not self._authorized()):
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return None
            if write and not self._authorized():
                self._error(401, "Unauthorized", "Invalid credentials")
                return None
            return repo

        # ------------------------------------------------------------------ routes
        def do_HEAD(self):
            self._record()
            self._resolve(head=True)

        def do_GET(self):
            self._record()
            path = unquote(urlsplit(self.path).path)
            if path == "/api/agent-harnesses":
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            match = re.fullmatch(rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/.*)?", path)
            if match:
                repo = self._repo(match["repo"])
                if repo is None:
                    return None
                entries = []
                for name, content in sorted(repo.files.items()):
                    entry = {
                        "type": "file",
                        "path": name,
                        "size": len(content),
                        "oid": hashlib.sha1(content).hexdigest(),
                    }
                    if name.endswith(".safetensors"):
                        entry["lfs"] = {
                            "oid": hashlib.sha256(content).hexdigest(),
                            "size": len(content),
                            "pointerSize": 134,
                        }
                    entries.append(entry)
                return self._json(200, entries)
            match = re.fullmatch(rf"/api/models/{REPO}(?:/revision/(?P<rev>.+))?", path)
            if match:
                repo = self._repo(match["repo"])
                if repo is None:
                    return None
                return self._json(
                    200,
                    {
                        "id": match["repo"],
                        "modelId": match["repo"],
                        "sha": repo.head,
                        "private": repo.private,
                        "siblings": [{"rfilename": name} for name in sorted(repo.files)],
                        "tags": [],
                    },
                )
            return self._resolve(head=False)

        def _resolve(self, head: bool):
            path = unquote(urlsplit(self.path).path)
            match = re.fullmatch(rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
            if not match:
                return self._error(404, "NotFound", f"no route {path}")
            repo = self._repo(match["repo"])
            if repo is None:
                return None
            if match["rev"] not in ("main", repo.head):
                return self._error(404, "RevisionNotFound", f"Revision {match['rev']} not found")
            content = repo.files.get(match["file"])
            if content is None:
                return self._error(404, "EntryNotFound", f"{match['file']} not found")
            headers = {
                "Content-Type": "application/octet-stream",
                "X-Repo-Commit": repo.head,
                "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
                "Accept-Ranges": "bytes",
            }
            status, body = 200, content
            range_header = self.headers.get("Range")
            if range_header and not head:
                start, _, end = range_header.removeprefix("bytes=").partition("-")
                start, end = int(start or 0), int(end) if end else len(content) - 1
                body, status = content[start : end + 1], 206
                headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            headers["Content-Length"] = str(len(content) if head else len(body))
            return self._send(status, body, headers, head=head)

        def do_PUT(self):
            self._record()
            # Like a presigned storage URL: no Authorization header, a one-time key issued by the batch call instead.
            url = urlsplit(self.path)
            match = re.fullmatch(r"/lfs-upload/(?P<oid>[0-9a-f]{64})", url.path)
            key = url.query.removeprefix("key=")
            with hub.lock:
                allowed = match is not None and hub.upload_keys.pop(key, None) == match["oid"]
            if not allowed:
                return self._error(403, "Forbidden", "invalid upload key")
            data = self._body()
            if hashlib.sha256(data).hexdigest() != match["oid"]:
                return self._error(400, "BadRequest", "sha256 mismatch")
            with hub.lock:
                hub.lfs[match["oid"]] = data
            return self._send(200)

        def do_POST(self):
            self._record()
            path = unquote(urlsplit(self.path).path)
            body = self._body()
            if path == "/api/validate-yaml":
                return self._json(200, {"errors": [], "warnings": []})
            if path == "/api/repos/create":
                if not self._authorized():
                    return self._error(401, "Unauthorized", "Invalid credentials")
                payload = json.loads(body or b"{}")
                repo_id = f"{payload.get('organization')}/{payload['name']}"
                url = {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id, "id": repo_id}
                with hub.lock:
                    if repo_id in hub.repos:
                        return self._json(409, {"error": "You already created this model repo", **url})
                    private = payload.get("visibility", "public") != "public" or bool(payload.get("private"))
                    hub.repos[repo_id] = Repo(private=private)
                return self._json(200, url)
            match = re.fullmatch(rf"/api/models/{REPO}/preupload/(?P<rev>.+)", path)
            if match:
                repo = self._repo(match["repo"], write=True)
                if repo is None:
                    return None
                files = json.loads(body)["files"]
                modes = [
                    {
                        "path": f["path"],
                        "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                        "shouldIgnore": False,
                        "oid": None,
                    }
                    for f in files
                ]
                return self._json(200, {"files": modes})
            match = re.fullmatch(rf"/{REPO}\.git/info/lfs/objects/batch", path)
            if match:
                repo = self._repo(match["repo"], write=True)
                if repo is None:
                    return None
                objects = []
                for obj in json.loads(body)["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                    if obj["oid"] not in hub.lfs:
                        key = secrets.token_hex(16)
                        with hub.lock:
                            hub.upload_keys[key] = obj["oid"]
                        href = f"{hub.endpoint}/lfs-upload/{obj['oid']}?key={key}"
                        entry["actions"] = {"upload": {"href": href, "header": {}}}
                    objects.append(entry)
                return self._json(200, {"transfer": "basic", "objects": objects})
            match = re.fullmatch(rf"/api/models/{REPO}/commit/(?P<rev>.+)", path)
            if match:
                repo = self._repo(match["repo"], write=True)
                if repo is None:
                    return None
                return self._commit(match["repo"], repo, body)
            return self._error(404, "NotFound", f"no route {path}")

        def _commit(self, repo_id: str, repo: Repo, body: bytes):
            files = dict(repo.files)
            message = ""
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value.get("summary", "")
                elif key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    if value["oid"] not in hub.lfs:
                        return self._error(400, "BadRequest", f"LFS object {value['oid']} was not uploaded")
                    files[value["path"]] = hub.lfs[value["oid"]]
                elif key == "deletedFile":
                    files.pop(value["path"], None)
            with hub.lock:
                oid = hashlib.sha1(f"{repo.head}{message}{sorted(files)}{len(repo.commits)}".encode()).hexdigest()
                repo.commits.append({"oid": oid, "message": message, "files": files})
            return self._json(
                200,
                {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None},
            )

    return Handler
