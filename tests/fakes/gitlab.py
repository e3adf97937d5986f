"""FakeGitLab: the parts of the GitLab REST API v4 the plugins use, on a real local server.

    async with FakeGitLab() as gl:
        project = gl.add_project("devstream/demo", files={"README.md": "# demo"})
        async with ApiClient(gl.url, token=gl.token) as api:  # gl.url ends in /api/v4
            await api.get(f"/projects/{project['id']}/repository/files/README.md",
                          params={"ref": "main"})

Covers the current user, namespaces and groups, projects (create, get by id or
URL-encoded path, update, delete, list), repository files (base64, content_sha256,
last_commit_id, GitLab's 400 messages), the repository tree and commits. Lists page
with per_page/page, Link and the X-Page/X-Next-Page/X-Total headers; every response
carries RateLimit-* headers; the throttle answers 429 "Retry later" with Retry-After.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from typing import Any

from aiohttp import web

from tests.fakes._git import Commit, Git, blob_sha, encode_files
from tests.fakes._server import ApiError, FakeServer, b64, iso, now_iso, parse_iso, read_params

FILE_NOT_FOUND = {"message": "404 File Not Found"}
NO_FILE = {"message": "A file with this name doesn't exist"}


@dataclass
class _Project:
    data: dict[str, Any]
    git: Git


def _missing(name: str) -> ApiError:
    return ApiError(400, {"error": f"{name} is missing"})


class FakeGitLab(FakeServer):
    """A fake GitLab at `url` (http://127.0.0.1:PORT/api/v4)."""

    api_prefix = "/api/v4"

    def __init__(self, *, token: str = "glpat-FakeGitLabToken012345", login: str = "root") -> None:
        super().__init__(token=token, login=login)
        self.rate_limit_limit = self.rate_limit_remaining = 2000
        self.user = {"id": 1, "username": login, "name": login.title(), "state": "active",
                     "email": f"{login}@example.com"}  # fmt: skip
        self.namespaces: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, _Project] = {}
        self._add_namespace(login, "user", namespace_id=1)

    # -- seeding -----------------------------------------------------------------------

    def add_group(self, path: str, *, name: str | None = None) -> dict[str, Any]:
        """A group (nested groups as "parent/child"); returns its namespace JSON."""
        return self._add_namespace(path, "group", name=name)

    def add_project(
        self,
        path_with_namespace: str,
        *,
        name: str | None = None,
        description: str | None = None,
        visibility: str = "private",
        default_branch: str = "main",
        files: Mapping[str, str | bytes] | None = None,
    ) -> dict[str, Any]:
        """A project (its group is created when missing; a commit holds `files`)."""
        namespace_path, _, path = path_with_namespace.rpartition("/")
        namespace = self._namespace(namespace_path) or self.add_group(namespace_path)
        project_id = self.next_id()
        web_url = f"{self.root}/{path_with_namespace}"
        now = now_iso()
        data = {
            "id": project_id, "name": name or path, "path": path, "description": description,
            "name_with_namespace": f"{namespace['name']} / {name or path}",
            "path_with_namespace": path_with_namespace, "namespace": namespace,
            "default_branch": default_branch, "visibility": visibility, "web_url": web_url,
            "http_url_to_repo": f"{web_url}.git",
            "ssh_url_to_repo": f"git@fake:{path_with_namespace}.git",
            "readme_url": None, "created_at": now, "last_activity_at": now,
            "empty_repo": True, "archived": False, "topics": [], "tag_list": [],
            "forks_count": 0, "star_count": 0,
            "_links": {"self": f"{self.url}/projects/{project_id}"},
        }  # fmt: skip
        project = _Project(data, Git(default_branch))
        self.projects[project_id] = project
        if files:
            self._commit(project, default_branch, encode_files(files), "Initial commit")
        return data

    def add_commit(
        self,
        project: int | str,
        message: str = "a change",
        *,
        files: Mapping[str, str | bytes | None] | None = None,
        branch: str | None = None,
        date: datetime | str | None = None,
        author: tuple[str, str] = ("Mona Lisa", "mona@example.com"),
    ) -> dict[str, Any]:
        """A commit on `branch` (default branch); returns it as the commits API lists it."""
        found = self._find(str(project))
        if found is None:
            raise KeyError(project)
        branch = branch or found.git.default_branch
        commit = self._commit(
            found, branch, encode_files(files or {}), message, author=author, date=iso(date)
        )
        return self._commit_json(found, commit)

    # -- FakeServer hooks --------------------------------------------------------------

    def _authenticated(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip() == self.token:
            return True
        return request.headers.get("PRIVATE-TOKEN") == self.token

    def _unauthorized(self) -> web.Response:
        return web.json_response({"message": "401 Unauthorized"}, status=401)

    def _not_found(self) -> web.Response:
        return web.json_response({"error": "404 Not Found"}, status=404)

    def _throttled(self, retry_after: float) -> web.Response:
        return web.Response(status=429, text="Retry later\n",
                            headers={"Retry-After": f"{retry_after:g}"})  # fmt: skip

    def _rate_limit_refusal(self) -> web.Response:
        return self._throttled(self.seconds_to_reset())

    def _rate_limit_headers(self) -> dict[str, str]:
        remaining = max(self.rate_limit_remaining, 0)
        return {
            "RateLimit-Limit": str(self.rate_limit_limit),
            "RateLimit-Observed": str(self.rate_limit_limit - remaining),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(int(self.rate_limit_reset)),
            "RateLimit-ResetTime": formatdate(self.rate_limit_reset, usegmt=True),
        }

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        api, one, files = "/api/v4", "/api/v4/projects/{id}", "/repository/files/{file_path}"
        router.add_get(api + "/user", self._get_user)
        router.add_get(api + "/namespaces/{id}", self._get_namespace)
        router.add_get(api + "/groups/{id}", self._get_namespace)
        router.add_get(api + "/groups/{id}/projects", self._list_projects)
        router.add_route("*", api + "/projects", self._projects)
        router.add_route("*", one, self._one_project)
        router.add_route("*", one + files, self._file)
        router.add_get(one + files + "/raw", self._raw_file)
        router.add_get(one + "/repository/tree", self._tree)
        router.add_get(one + "/repository/commits", self._list_commits)

    # -- handlers ----------------------------------------------------------------------

    async def _get_user(self, request: web.Request) -> web.Response:
        return web.json_response(self.user)

    async def _get_namespace(self, request: web.Request) -> web.Response:
        namespace = self._namespace(request.match_info["id"])
        kind = "group" if "/groups/" in request.path else "namespace"
        if namespace is None or (kind == "group" and namespace["kind"] != "group"):
            raise ApiError(404, {"message": f"404 {kind.title()} Not Found"})
        return web.json_response(namespace)

    async def _projects(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            return await self._create_project(request)
        if request.method != "GET":
            raise ApiError(404, {"error": "404 Not Found"})
        return await self._list_projects(request)

    async def _list_projects(self, request: web.Request) -> web.Response:
        search = request.query.get("search", "").lower()
        projects = [p.data for p in self.projects.values() if search in p.data["name"].lower()]
        if "id" in request.match_info:  # /groups/{id}/projects
            namespace = self._namespace(request.match_info["id"])
            if namespace is None:
                raise ApiError(404, {"message": "404 Group Not Found"})
            projects = [p for p in projects if p["namespace"]["id"] == namespace["id"]]
        order = request.query.get("order_by", "created_at")
        key = order if order in ("id", "name", "path", "created_at") else "created_at"
        descending = request.query.get("sort", "desc") != "asc"
        projects.sort(key=lambda p: (p[key], p["id"]), reverse=descending)
        return self._list(request, projects)

    async def _create_project(self, request: web.Request) -> web.Response:
        params = await read_params(request)
        name, path = params.get("name"), params.get("path")
        if not name and not path:
            raise ApiError(
                400, {"error": "name, path are missing, at least one parameter must be provided"}
            )
        path = path or re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-").lower()
        namespace = self._namespace(str(params.get("namespace_id") or 1))
        if namespace is None:
            raise ApiError(404, {"message": "404 Namespace Not Found"})
        full_path = f"{namespace['full_path']}/{path}"
        if self._find(full_path) is not None:
            taken = ["has already been taken"]
            raise ApiError(400, {"message": {"project_namespace.name": taken,
                                             "name": taken, "path": taken}})  # fmt: skip
        data = self.add_project(
            full_path, name=name or path, description=params.get("description"),
            visibility=params.get("visibility", "private"),
            default_branch=params.get("default_branch") or "main",
            files={"README.md": f"# {name or path}\n"}
            if _truthy(params.get("initialize_with_readme")) else None,
        )  # fmt: skip
        return web.json_response(data, status=201)

    async def _one_project(self, request: web.Request) -> web.Response:
        project = self._project(request)
        if request.method == "DELETE":
            del self.projects[project.data["id"]]
            return web.json_response({"message": "202 Accepted"}, status=202)
        if request.method == "PUT":
            params = await read_params(request)
            for key in ("name", "description", "visibility", "default_branch", "topics"):
                if key in params:
                    project.data[key] = params[key]
            project.git.default_branch = project.data["default_branch"]
        elif request.method != "GET":
            raise ApiError(404, {"error": "404 Not Found"})
        return web.json_response(project.data)

    async def _file(self, request: web.Request) -> web.Response:
        project = self._project(request)
        path = request.match_info["file_path"]
        if request.method == "GET":
            commit, data = self._read_file(request, project, path)
            last = project.git.last_commit_for(path, commit.sha)
            return web.json_response({
                "file_name": path.rsplit("/", 1)[-1], "file_path": path, "size": len(data),
                "encoding": "base64", "content": b64(data),
                "content_sha256": hashlib.sha256(data).hexdigest(),
                "ref": request.query["ref"], "blob_id": blob_sha(data), "commit_id": commit.sha,
                "last_commit_id": last.sha if last else commit.sha, "execute_filemode": False,
            })  # fmt: skip
        if request.method not in ("POST", "PUT", "DELETE"):
            raise ApiError(404, {"error": "404 Not Found"})
        params = await read_params(request)
        for required in ("branch", "commit_message"):
            if not params.get(required):
                raise _missing(required)
        if request.method != "DELETE" and not isinstance(params.get("content"), str):
            raise _missing("content")
        branch, start = params["branch"], params.get("start_branch")
        if branch in project.git.branches:
            head = project.git.resolve(branch)
        else:  # a new branch: from start_branch, or the first commit of an empty repository
            head = project.git.resolve(start) if start else None
        if head is None and not project.git.empty:
            raise ApiError(
                400, {"message": "You can only create or edit files when you are on a branch"}
            )
        exists = head is not None and path in head.files
        if request.method == "POST" and exists:
            raise ApiError(400, {"message": "A file with this name already exists"})
        if request.method != "POST" and not exists:
            raise ApiError(400, NO_FILE)
        last_id = params.get("last_commit_id")
        if last_id and head is not None:
            last = project.git.last_commit_for(path, head.sha)
            if last is None or last.sha != last_id:
                raise ApiError(400, {"message": "You are attempting to update a file that has "
                                                "changed since you started editing it."})  # fmt: skip
        new: bytes | None = None  # None deletes
        if request.method != "DELETE":
            new = params["content"].encode()
            if params.get("encoding") == "base64":
                try:
                    new = base64.b64decode(new, validate=True)
                except (binascii.Error, ValueError):
                    raise ApiError(400, {"error": "content is invalid base64"}) from None
        author = (params.get("author_name") or self.user["name"],
                  params.get("author_email") or self.user["email"])  # fmt: skip
        self._commit(
            project, branch, {path: new}, params["commit_message"],
            author=author, start=start if branch not in project.git.branches else None,
        )  # fmt: skip
        if request.method == "DELETE":
            return web.Response(status=204)
        status = 201 if request.method == "POST" else 200
        return web.json_response({"file_path": path, "branch": branch}, status=status)

    async def _raw_file(self, request: web.Request) -> web.Response:
        _, data = self._read_file(request, self._project(request), request.match_info["file_path"])
        return web.Response(body=data, content_type="text/plain")

    async def _tree(self, request: web.Request) -> web.Response:
        project = self._project(request)
        commit = project.git.resolve(request.query.get("ref"))
        if commit is None:
            raise ApiError(404, {"message": "404 Tree Not Found"})
        recursive = _truthy(request.query.get("recursive"))
        path = request.query.get("path", "")
        entries = [
            {"id": e["sha"], "name": e["path"].rsplit("/", 1)[-1], "type": e["type"],
             "path": e["path"], "mode": "100644" if e["type"] == "blob" else "040000"}
            for e in project.git.tree(commit, recursive=recursive, path=path)
        ]  # fmt: skip
        return self._list(request, entries)

    async def _list_commits(self, request: web.Request) -> web.Response:
        project = self._project(request)
        ref = request.query.get("ref_name")
        if project.git.resolve(ref) is None:
            return self._list(request, [])  # GitLab answers an empty list, not a 404
        since, until = request.query.get("since"), request.query.get("until")
        commits = [
            self._commit_json(project, c) for c in project.git.log(ref)
            if (not since or parse_iso(c.date) >= parse_iso(since))
            and (not until or parse_iso(c.date) <= parse_iso(until))
        ]  # fmt: skip
        return self._list(request, commits)

    # -- helpers -----------------------------------------------------------------------

    def _list(self, request: web.Request, items: Sequence[Any]) -> web.Response:
        page = self.paginate(request, items, default=20)
        headers = {
            "X-Page": str(page.page),
            "X-Per-Page": str(page.per_page),
            "X-Next-Page": str(page.page + 1) if page.page < page.last else "",
            "X-Prev-Page": str(page.page - 1) if page.page > 1 else "",
            "X-Total": str(page.total),
            "X-Total-Pages": str(page.last),
            **self.link_header(request, page),
        }
        return web.json_response(page.items, headers=headers)

    def _add_namespace(
        self, full_path: str, kind: str, *, name: str | None = None, namespace_id: int = 0
    ) -> dict[str, Any]:
        parent_path, _, path = full_path.rpartition("/")
        parent = None
        if parent_path:
            parent = self._namespace(parent_path) or self.add_group(parent_path)
        namespace_id = namespace_id or self.next_id()
        namespace = {
            "id": namespace_id, "name": name or path, "path": path, "kind": kind,
            "full_path": full_path, "parent_id": parent["id"] if parent else None,
            "web_url": f"{self.root}/{full_path}",
        }  # fmt: skip
        self.namespaces[namespace_id] = namespace
        return namespace

    def _namespace(self, key: str) -> dict[str, Any] | None:
        if key.isdigit():
            return self.namespaces.get(int(key))
        return next((n for n in self.namespaces.values() if n["full_path"] == key), None)

    def _find(self, key: str) -> _Project | None:
        if key.isdigit():
            return self.projects.get(int(key))
        return next(
            (p for p in self.projects.values() if p.data["path_with_namespace"] == key), None
        )

    def _project(self, request: web.Request) -> _Project:
        # aiohttp has already decoded "group%2Fproject"; an unencoded slash never gets here.
        project = self._find(request.match_info["id"])
        if project is None:
            raise ApiError(404, {"message": "404 Project Not Found"})
        return project

    def _read_file(
        self, request: web.Request, project: _Project, path: str
    ) -> tuple[Commit, bytes]:
        if "ref" not in request.query:
            raise _missing("ref")
        commit = project.git.resolve(request.query["ref"])
        if commit is None:
            raise ApiError(404, {"message": "404 Commit Not Found"})
        if path not in commit.files:
            raise ApiError(404, FILE_NOT_FOUND)
        return commit, commit.files[path]

    def _commit(
        self, project: _Project, branch: str, changes: Mapping[str, bytes | None], message: str,
        **kw: Any,
    ) -> Commit:  # fmt: skip
        commit = project.git.commit(branch, changes, message, **kw)
        project.data["empty_repo"] = False
        project.data["last_activity_at"] = commit.date
        return commit

    def _commit_json(self, project: _Project, commit: Commit) -> dict[str, Any]:
        title = commit.message.split("\n", 1)[0]
        web_url = f"{project.data['web_url']}/-/commit/{commit.sha}"
        return {
            "id": commit.sha, "short_id": commit.sha[:8], "title": title,
            "message": commit.message, "author_name": commit.author_name,
            "author_email": commit.author_email, "authored_date": commit.date,
            "committer_name": commit.author_name, "committer_email": commit.author_email,
            "committed_date": commit.date, "created_at": commit.date,
            "parent_ids": commit.parents, "web_url": web_url,
        }  # fmt: skip


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")
