"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, for tests.

It answers what the installed huggingface_hub sends for ``create_repo``, ``create_branch``,
``create_commit`` (``validate-yaml``, ``preupload`` answering "regular" so files travel inline as
base64 in the NDJSON commit; no LFS), ``repo_info``, ``list_repo_tree`` and ``hf_hub_download``
(HEAD + GET on ``/resolve`` with ETag, X-Repo-Commit and Content-Length). Repos live in memory.
Every request is recorded, and the server shuts itself down after ``lifetime`` seconds. For fault
tests, routes named in ``stall`` read the request and never answer; those in ``garbage`` answer
200 with bytes that are not what the route returns.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [  # (method, pattern, handler name); methods are tried in order
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", rf"/api/models/{REPO}/branch/(?P<rev>[^/]+)", "create_branch"),
    ("GET", rf"/api/models/{REPO}/revision/(?P<rev>[^/]+)", "repo_info"),
    ("GET", r"/api/models/(?P<model>[^/]+(?:/[^/]+)?)", "model_info"),
    ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)(?P<path>/.*)?", "tree"),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]
WRITES = {"create_repo", "validate_yaml", "preupload", "commit", "create_branch"}


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit id
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit id -> files

    def files(self, rev: str) -> tuple[str, dict[str, bytes]] | None:
        sha = self.branches.get(rev, rev)
        return (sha, self.commits[sha]) if sha in self.commits else None

    def add_commit(self, parent: str | None, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(f"{parent}:{len(self.commits)}".encode()).hexdigest()
        self.commits[sha] = files
        return sha


@dataclass
class Request:
    method: str
    path: str
    route: str | None
    authorization: str | None
    body: bytes


class FakeHub:
    """``with FakeHub(token) as hub:`` serves on ``hub.url`` until the block ends."""

    def __init__(self, token: str, lifetime: float = 120.0) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.fail_commits = False  # answer every commit with HTTP 500
        self.stall: set[str] = set()  # route names (or "*") that never answer
        self.garbage: set[str] = set()  # route names (or "*") answered 200 with junk bytes
        self.status: dict[str, int] = {}  # route name (or "*") -> an HTTP error it answers
        self._closed = threading.Event()
        self.delay = 0.0  # seconds before each answer: a slow link
        # Models as `model_info` sees them: canonical id -> card metadata; legacy id -> canonical
        # (the Hub answers a legacy id with a redirect, as it does for "gpt2").
        self.models: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._timer = threading.Timer(lifetime, self._server.shutdown)
        self._timer.daemon = True

    def __enter__(self) -> FakeHub:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()  # releases stalled handlers
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.route in WRITES]

    def seed(self, repo_id: str, files: dict[str, bytes], private: bool = False) -> None:
        """A repo as if pushed earlier, without going through the API."""
        repo = Repo(private=private)
        repo.branches["main"] = repo.add_commit(None, files)
        self.repos[repo_id] = repo

    def head_files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        found = self.repos[repo_id].files(branch)
        assert found is not None, f"{repo_id} has no branch {branch}"
        return found[1]

    # --- handlers: (status, headers, body) ---------------------------------------------------

    def create_repo(self, req: Request, m: dict[str, str]) -> tuple:
        payload = json.loads(req.body)
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:
            return _json(409, {"error": "You already created this model repo", "url": url})
        repo = Repo(private=payload.get("visibility") == "private")
        repo.branches["main"] = repo.add_commit(None, {".gitattributes": b"*.bin filter=lfs\n"})
        self.repos[repo_id] = repo
        return _json(200, {"url": url, "name": repo_id})

    def validate_yaml(self, req: Request, m: dict[str, str]) -> tuple:
        content = json.loads(req.body)["content"]
        match = re.match(r"---\n(.*?)\n---\n", content, re.S)
        meta = yaml.safe_load(match.group(1)) if match else None
        if not isinstance(meta, dict):
            return _json(400, {"errors": [{"message": "no YAML metadata block"}]})
        return _json(200, {"errors": [], "warnings": []})

    def preupload(self, req: Request, m: dict[str, str]) -> tuple:
        sha, files = self._revision(m)
        entries = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                    "oid": git_blob_sha(files[f["path"]]) if f["path"] in files else None}
                   for f in json.loads(req.body)["files"]]
        return _json(200, {"files": entries, "commitOid": sha})

    def commit(self, req: Request, m: dict[str, str]) -> tuple:
        if self.fail_commits:
            return _json(500, {"error": "commit failed (as the test asked)"})
        parent, files = self._revision(m)
        files = dict(files)
        for line in req.body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                files.pop(item["value"]["path"], None)
            elif item["key"] != "header":
                return _json(400, {"error": f"fake hub does not support {item['key']}"})
        repo = self.repos[m["repo"]]
        sha = repo.add_commit(parent, files)
        repo.branches[unquote(m["rev"])] = sha
        return _json(200, {"commitUrl": f"{self.url}/{m['repo']}/commit/{sha}",
                           "commitOid": sha, "pullRequestUrl": None, "success": True})

    def create_branch(self, req: Request, m: dict[str, str]) -> tuple:
        repo = self.repos.get(m["repo"])
        if repo is None:
            return _json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        branch = unquote(m["rev"])
        if branch in repo.branches:
            return _json(409, {"error": "Reference already exists"})
        repo.branches[branch] = repo.branches["main"]
        return _json(200, {})

    def repo_info(self, req: Request, m: dict[str, str]) -> tuple:
        sha, files = self._revision(m, reading=req)
        return _json(200, {"id": m["repo"], "sha": sha, "private": self.repos[m["repo"]].private,
                           "siblings": [{"rfilename": p} for p in sorted(files)]})

    def model_info(self, req: Request, m: dict[str, str]) -> tuple:
        model = unquote(m["model"])
        if model in self.aliases:
            return 307, {"Location": f"/api/models/{self.aliases[model]}"}, b""
        if model in self.models:
            card = self.models[model]
            tags = [f"license:{card['license']}"] if "license" in card else []
            return _json(200, {"id": model, "sha": "0" * 40, "private": False, "tags": tags,
                               "cardData": card})
        if model in self.repos:
            return self.repo_info(req, {"repo": model, "rev": "main"})
        return _json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

    def tree(self, req: Request, m: dict[str, str]) -> tuple:
        _, files = self._revision(m, reading=req)
        prefix = (m.get("path") or "").strip("/")
        folders = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        entries = [{"type": "directory", "path": d, "oid": git_blob_sha(d.encode()), "size": 0}
                   for d in folders]
        entries += [{"type": "file", "path": p, "oid": git_blob_sha(data), "size": len(data)}
                    for p, data in sorted(files.items())]
        return _json(200, [e for e in entries if e["path"].startswith(prefix)])

    def resolve(self, req: Request, m: dict[str, str]) -> tuple:
        sha, files = self._revision(m, reading=req)
        path = unquote(m["path"])
        if path not in files:
            return _json(404, {"error": "Entry not found"},
                         {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha})
        data = files[path]
        headers = {"ETag": f'"{git_blob_sha(data)}"', "X-Repo-Commit": sha,
                   "Content-Type": "application/octet-stream"}
        return 200, headers, data

    def _revision(self, m: dict[str, str], reading: Request | None = None
                  ) -> tuple[str, dict[str, bytes]]:
        """(commit id, files) of the repo at ``m['rev']``; raises _Reply when there is none."""
        repo = self.repos.get(m["repo"])
        if repo is None or (reading and repo.private and not self._authorized(reading)):
            raise _Reply(_json(404, {"error": "Repository not found"},
                               {"X-Error-Code": "RepoNotFound"}))
        found = repo.files(unquote(m["rev"]))
        if found is None:
            raise _Reply(_json(404, {"error": "Invalid rev id"},
                               {"X-Error-Code": "RevisionNotFound"}))
        return found

    def _authorized(self, req: Request) -> bool:
        return req.authorization == f"Bearer {self.token}"

    def handle(self, method: str, raw_path: str, authorization: str | None,
               body: bytes) -> tuple:
        path = urlsplit(raw_path).path
        for route_method, pattern, name in ROUTES:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                req = Request(method, path, name, authorization, body)
                time.sleep(self.delay)
                if {name, "*"} & self.stall:
                    self.requests.append(req)
                    self._closed.wait()  # accept, read the request, never answer
                    return 503, {}, b""
                failing = self.status.get(name, self.status.get("*"))
                if failing is not None:
                    self.requests.append(req)
                    return _json(failing, {"error": f"fake hub answers {failing}"})
                if {name, "*"} & self.garbage:
                    self.requests.append(req)
                    return 200, {"Content-Type": "application/json", "ETag": '"x"',
                                 "X-Repo-Commit": "0" * 40}, b"\x00\xff<html>not json"
                with self._lock:
                    self.requests.append(req)
                    if name in WRITES and not self._authorized(req):
                        return _json(401, {"error": "Invalid credentials in Authorization header"})
                    try:
                        return getattr(self, name)(req, match.groupdict())
                    except _Reply as reply:
                        return reply.response
        with self._lock:
            self.requests.append(Request(method, path, None, authorization, body))
        return _json(404, {"error": f"fake hub has no route for {method} {path}"})


class _Reply(Exception):  # noqa: N818 (a response, not an error)
    def __init__(self, response: tuple) -> None:
        self.response = response


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> tuple:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return status, headers, json.dumps(data).encode()


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, data = self.hub.handle(method, self.path,
                                                self.headers.get("Authorization"), body)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            with contextlib.suppress(ConnectionError):  # a stalled request's client is gone
                self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self._serve("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean
