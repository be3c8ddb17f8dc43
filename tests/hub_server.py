"""A loopback server that speaks the parts of the Hugging Face Hub HTTP API that ``huggingface_hub``
and ``datasets`` call to publish and read back a repository.

It keeps repositories in memory as git-like commit histories and implements, with the payloads and
headers the real clients send and parse:

* ``POST /api/repos/create`` (409 when the repo exists), ``POST /api/validate-yaml`` (card metadata:
  ``size_categories`` / ``task_categories`` checked against the Hub's vocabulary, ``configs`` shape);
* ``POST /api/{type}s/{repo}/preupload/{rev}`` (``lfs`` for binary files, ``regular`` for text);
* ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` + ``PUT`` upload + ``POST`` verify (basic LFS);
* ``POST /api/{type}s/{repo}/commit/{rev}`` (NDJSON: ``header``, ``file``, ``lfsFile``, ``deletedFile``,
  ``deletedFolder``; ``parentCommit`` checked);
* ``GET /api/{type}s/{repo}[/revision/{rev}]`` (repo info with siblings), ``GET .../tree/{rev}/{path}``
  (optionally recursive), ``POST .../paths-info/{rev}``, ``GET .../commits/{rev}``;
* ``HEAD`` / ``GET /{prefix}{repo}/resolve/{rev}/{path}`` with ``ETag``, ``X-Repo-Commit``,
  ``X-Linked-Etag`` / ``X-Linked-Size`` and ``Range`` requests.

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) so the client
raises its own typed errors. Fault injection for tests: :meth:`HubState.fail_next` makes the next
``n`` requests of a kind (``"commit"``, ``"lfs_upload"``, ...) answer HTTP 500.

Example::

    with serve_hub() as hub:            # hub.url == "http://127.0.0.1:PORT"
        os.environ["HF_ENDPOINT"] = hub.url
        ...
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".safetensors", ".bin", ".pt", ".gguf", ".zip")
#: The Hub's accepted ``size_categories`` values.
SIZE_CATEGORIES = {
    "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B",
    "10B<n<100B", "100B<n<1T", "n>1T", "unknown",
}
#: A subset of the Hub's task categories (enough for the cards under test; anything else is refused).
TASK_CATEGORIES = {
    "image-to-text", "text-to-image", "image-text-to-text", "image-classification", "visual-question-answering",
    "text-generation", "text-classification", "zero-shot-image-classification", "image-feature-extraction",
}
HEX40 = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha(content: bytes) -> str:
    """The git object id of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        return git_blob_sha(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class Commit:
    sha: str
    title: str
    files: dict[str, StoredFile]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    commits: list[Commit] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.refs.get(revision, revision)
        return next((commit for commit in self.commits if commit.sha == sha), None)


class HubState:
    """The server's repositories, LFS store, request log and fault switches (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._faults: dict[str, int] = {}

    def fail_next(self, kind: str, count: int = 1) -> None:
        """Answer HTTP 500 to the next ``count`` requests of ``kind`` (``"commit"``, ``"lfs_upload"``...)."""
        with self.lock:
            self._faults[kind] = self._faults.get(kind, 0) + count

    def clear_faults(self) -> None:
        """Cancel every pending injected failure."""
        with self.lock:
            self._faults.clear()

    def failures(self, kind_path: str) -> int:
        """How many requests whose path contains ``kind_path`` were answered with HTTP 5xx."""
        with self.lock:
            return sum(1 for _, path, status in self.requests if kind_path in path and status >= 500)

    def take_fault(self, kind: str) -> bool:
        with self.lock:
            if self._faults.get(kind, 0) > 0:
                self._faults[kind] -= 1
                return True
            return False

    def repo(self, repo_type: str, repo_id: str) -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Path -> content of a repository at ``revision`` (for assertions)."""
        with self.lock:
            commit = self.repos[(repo_type, repo_id)].resolve(revision)
            return {path: stored.content for path, stored in commit.files.items()}

    def commit_count(self, repo_type: str, repo_id: str) -> int:
        with self.lock:
            return len(self.repos[(repo_type, repo_id)].commits)

    def new_commit(self, repo: Repo, title: str, files: dict[str, StoredFile], branch: str = "main") -> Commit:
        with self.lock:
            sha = hashlib.sha1(f"{repo.repo_id}/{len(repo.commits)}/{title}/{time.time_ns()}".encode()).hexdigest()
            commit = Commit(sha=sha, title=title, files=files, date=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
            repo.commits.append(commit)
            repo.refs[branch] = sha
            return commit


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubHandler(BaseHTTPRequestHandler):
    """Routes one request to the matching Hub endpoint."""

    server: "HubServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # ---- plumbing ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        with self.state.lock:
            self.state.requests.append((self.command, self.path, status))

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        query = parse_qs(urlsplit(self.path).query)
        try:
            body = self._body() if method in ("POST", "PUT") else b""
            self._route(method, path, query, body)
        except HttpError as exc:
            headers = {"X-Error-Message": exc.message}
            if exc.code:
                headers["X-Error-Code"] = exc.code
            self._json({"error": exc.message}, status=exc.status, headers=headers)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body))
        if method == "PUT" and parts[0] == "lfs-upload":
            return self._lfs_put(parts[1], body)
        if method == "POST" and parts[0] == "lfs-verify":
            return self._lfs_verify(json.loads(body))
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:]
            return self._api(method, repo_type, repo_id, rest, query, body)
        repo_type, offset = "model", 0
        if parts[0] in ("datasets", "spaces"):
            repo_type, offset = REPO_TYPES[parts[0]], 1
        if len(parts) >= offset + 3 and parts[offset + 1].endswith(".git") and parts[offset + 2:offset + 5] == ["info", "lfs", "objects"]:
            repo_id = f"{parts[offset]}/{parts[offset + 1][:-4]}"
            return self._lfs_batch(repo_type, repo_id, json.loads(body))
        if len(parts) >= offset + 5 and parts[offset + 2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{parts[offset]}/{parts[offset + 1]}"
            return self._resolve(repo_type, repo_id, parts[offset + 3], "/".join(parts[offset + 4:]))
        raise HttpError(404, f"no route for {method} {path}")

    # ---- helpers ----------------------------------------------------------------------------
    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.state.repo(repo_type, repo_id)
        if repo is None:
            raise HttpError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(unquote(revision))
        if commit is None:
            raise HttpError(404, f"Revision {revision} not found", "RevisionNotFound")
        return commit

    def _file_entry(self, path: str, stored: StoredFile, commit: Commit, expand: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": stored.oid, "size": len(stored.content), "path": path}
        if stored.lfs:
            entry["lfs"] = {"oid": stored.sha256, "size": len(stored.content), "pointerSize": 134}
        if expand:
            entry["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
        return entry

    @staticmethod
    def _folder_entry(path: str) -> dict[str, Any]:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}

    # ---- endpoints ----------------------------------------------------------------------------
    def _create_repo(self, payload: dict[str, Any]) -> None:
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        url = f"{self.base_url}/{URL_PREFIXES[repo_type]}{repo_id}"
        with self.state.lock:
            if self.state.repo(repo_type, repo_id) is not None:  # the Hub still sends the repo's url
                message = "You already created this repo"
                return self._json({"error": message, "url": url}, 409, {"X-Error-Message": message})
            repo = Repo(repo_type, repo_id)
            self.state.repos[(repo_type, repo_id)] = repo
            attributes = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)
            self.state.new_commit(repo, "initial commit", {".gitattributes": StoredFile(attributes.encode(), False)})
        self._json({"url": url, "name": repo_id})

    def _validate_yaml(self, payload: dict[str, Any]) -> None:
        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
        errors: list[str] = []
        metadata: Any = {}
        if match:
            try:
                metadata = yaml.safe_load(match.group(1)) or {}
            except yaml.YAMLError as exc:
                errors.append(f"YAML does not parse: {exc}")
        if not isinstance(metadata, dict):
            errors.append("metadata must be a mapping")
            metadata = {}
        for value in _as_list(metadata.get("size_categories")):
            if value not in SIZE_CATEGORIES:
                errors.append(f'"size_categories" has an invalid value {value!r}')
        for value in _as_list(metadata.get("task_categories")):
            if value not in TASK_CATEGORIES:
                errors.append(f'"task_categories" has an invalid value {value!r}')
        for config in _as_list(metadata.get("configs")):
            if not isinstance(config, dict) or "config_name" not in config or "data_files" not in config:
                errors.append(f'"configs" entries need config_name and data_files, got {config!r}')
        if payload.get("repoType") == "model" and "model-index" in metadata:
            for entry in _as_list(metadata["model-index"]):
                if not isinstance(entry, dict) or "name" not in entry or "results" not in entry:
                    errors.append('"model-index" entries need name and results')
        if errors and "text/plain" in (self.headers.get("Accept") or ""):  # DatasetCard.validate asks for text
            self._send(400, "\n".join(errors).encode(), content_type="text/plain")
        elif errors:
            self._json({"errors": [{"message": m} for m in errors]}, status=400)
        else:
            self._json({"warnings": []})

    def _api(self, method: str, repo_type: str, repo_id: str, rest: list[str],
             query: dict[str, list[str]], body: bytes) -> None:
        repo = self._repo(repo_type, repo_id)
        kind = rest[0] if rest else "info"
        if method == "GET" and kind == "info":
            return self._repo_info(repo, "main")
        if method == "GET" and kind == "revision":
            return self._repo_info(repo, "/".join(rest[1:]))
        if method == "GET" and kind == "tree":
            return self._tree(repo, rest[1], "/".join(rest[2:]), query)
        if method == "POST" and kind == "paths-info":
            return self._paths_info(repo, "/".join(rest[1:]), body)
        if method == "GET" and kind == "commits":
            commit = self._commit(repo, "/".join(rest[1:]))
            index = repo.commits.index(commit)
            history = [
                {"id": c.sha, "title": c.title, "message": "", "authors": [{"user": "user"}], "date": c.date}
                for c in reversed(repo.commits[: index + 1])
            ]
            return self._json(history)
        if method == "POST" and kind == "preupload":
            return self._preupload(repo, json.loads(body))
        if method == "POST" and kind == "commit":
            return self._create_commit(repo, "/".join(rest[1:]), body)
        raise HttpError(404, f"no route for {method} {kind}")

    def _repo_info(self, repo: Repo, revision: str) -> None:
        commit = self._commit(repo, revision)
        siblings = []
        for path, stored in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path, "size": len(stored.content), "blobId": stored.oid}
            if stored.lfs:
                sibling["lfs"] = {"size": len(stored.content), "sha256": stored.sha256, "pointerSize": 134}
            siblings.append(sibling)
        self._json({
            "id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.sha, "private": False,
            "disabled": False, "gated": False, "lastModified": commit.date, "createdAt": repo.commits[0].date,
            "tags": [], "downloads": 0, "likes": 0, "siblings": siblings,
        })

    def _tree(self, repo: Repo, revision: str, path: str, query: dict[str, list[str]]) -> None:
        commit = self._commit(repo, revision)
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = query.get("expand", ["false"])[0].lower() in ("1", "true")
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for file_path, stored in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            relative = file_path[len(prefix):].split("/")
            for depth in range(1, len(relative)):
                folder = prefix + "/".join(relative[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, self._folder_entry(folder))
            if recursive or len(relative) == 1:
                entries[file_path] = self._file_entry(file_path, stored, commit, expand)
        if prefix and not entries:
            raise HttpError(404, f"{path} does not exist at {revision}", "EntryNotFound")
        self._json(sorted(entries.values(), key=lambda entry: entry["path"]))

    def _paths_info(self, repo: Repo, revision: str, body: bytes) -> None:
        commit = self._commit(repo, revision)
        form = parse_qs(body.decode())
        expand = form.get("expand", ["False"])[0].lower() == "true"
        result = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                result.append(self._file_entry(path, commit.files[path], commit, expand))
            elif any(name.startswith(path + "/") for name in commit.files):
                result.append(self._folder_entry(path))
        self._json(result)

    def _preupload(self, repo: Repo, payload: dict[str, Any]) -> None:
        files = []
        for item in payload["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = item["path"].lower().endswith(LFS_SUFFIXES) or b"\0" in sample or item["size"] > 10_000_000
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._json({"files": files, "commitOid": repo.refs.get("main")})

    def _lfs_batch(self, repo_type: str, repo_id: str, payload: dict[str, Any]) -> None:
        self._repo(repo_type, repo_id)
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.base_url}/lfs-upload/{obj['oid']}"},
                    "verify": {"href": f"{self.base_url}/lfs-verify"},
                }
            objects.append(entry)
        self._json({"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if self.state.take_fault("lfs_upload"):
            raise HttpError(500, "injected LFS upload failure")
        if hashlib.sha256(body).hexdigest() != oid:
            raise HttpError(400, f"uploaded bytes do not hash to {oid}")
        with self.state.lock:
            self.state.lfs[oid] = body
        self._send(200, b"")

    def _lfs_verify(self, payload: dict[str, Any]) -> None:
        stored = self.state.lfs.get(payload["oid"])
        if stored is None or len(stored) != payload["size"]:
            raise HttpError(404, f"LFS object {payload['oid']} not uploaded")
        self._json({})

    def _create_commit(self, repo: Repo, revision: str, body: bytes) -> None:
        if self.state.take_fault("commit"):
            raise HttpError(500, "injected commit failure")
        branch = unquote(revision)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        with self.state.lock:
            current = self._commit(repo, branch)
            parent = header.get("parentCommit")
            if parent and parent != current.sha:
                raise HttpError(412, f"parent commit {parent} is not the head of {branch}")
            files = dict(current.files)
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = StoredFile(base64.b64decode(value["content"]), False)
                elif key == "lfsFile":
                    content = self.state.lfs.get(value["oid"])
                    if content is None:
                        raise HttpError(400, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    files[value["path"]] = StoredFile(content, True)
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: f for p, f in files.items() if not p.startswith(folder)}
                elif key != "header":
                    raise HttpError(400, f"unsupported commit operation {key!r}")
            commit = self.state.new_commit(repo, header.get("summary", ""), files, branch)
        url = f"{self.base_url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{commit.sha}"
        self._json({"commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": None, "success": True})

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id)
        commit = self._commit(repo, revision)
        stored = commit.files.get(path)
        if stored is None:
            raise HttpError(404, f"Entry {path} not found", "EntryNotFound")
        content = stored.content
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{stored.oid}"', "Accept-Ranges": "bytes"}
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(len(content))
        status = 200
        byte_range = self.headers.get("Range")
        if byte_range and byte_range.startswith("bytes="):
            start_text, _, end_text = byte_range[6:].partition("-")
            if start_text == "":
                start, end = max(len(content) - int(end_text), 0), len(content) - 1
            else:
                start = int(start_text)
                end = min(int(end_text), len(content) - 1) if end_text else len(content) - 1
            if start >= len(content) and len(content) > 0:
                self._send(416, b"", {"Content-Range": f"bytes */{len(content)}", **headers})
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start:end + 1], 206
        self._send(status, content, headers, content_type="application/octet-stream")


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.state = state

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@dataclass
class RunningHub:
    """A started server: its ``url`` and ``state`` (repositories, faults, request log)."""

    url: str
    state: HubState


@contextlib.contextmanager
def serve_hub() -> Iterator[RunningHub]:
    """Start a :class:`HubServer` on 127.0.0.1 (a free port) in a thread; stop it on exit."""
    state = HubState()
    server = HubServer(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningHub(server.url, state)
    finally:
        server.shutdown()
        server.server_close()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def resolve_url(base_url: str, repo_type: str, repo_id: str, path: str, revision: str = "main") -> str:
    """The ``resolve`` URL of a file (for tests that fetch raw bytes)."""
    return f"{base_url}/{URL_PREFIXES[repo_type]}{repo_id}/resolve/{quote(revision, safe='')}/{path}"
