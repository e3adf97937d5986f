"""FakeGitHub: the parts of the GitHub REST API the plugins use, on a real local server.

    async with FakeGitHub() as gh:
        repo = gh.add_repo("octocat/hello", files={"README.md": "# hello"})
        gh.add_issue("octocat/hello", "Bug", state="closed")
        async with ApiClient(gh.url, token=gh.token) as api: ...

Responses copy GitHub's shapes, status codes and messages for: /user, repositories
(create, get, update, delete, list), the contents API (base64, blob shas, commits on a
branch), git trees, commits, issues (pull requests included, as GitHub does), pulls and
their commits, and Actions workflow runs. Lists page with per_page/page and a Link header;
every response carries X-RateLimit-* headers, and the fault knobs come from FakeServer.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes._git import Commit, Git, blob_sha, encode_files
from tests.fakes._server import ApiError, FakeServer, b64, iso, now_iso, parse_iso, read_params

DOCS = "https://docs.github.com/rest"
NOT_FOUND = {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
EMPTY_REPO = {"message": "Git Repository is empty.", "documentation_url": DOCS, "status": "409"}
SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID."
)


def _invalid(field_name: str) -> ApiError:
    return ApiError(422, {"message": f'Invalid request.\n\n"{field_name}" wasn\'t supplied.',
                          "documentation_url": DOCS, "status": "422"})  # fmt: skip


@dataclass
class _Repo:
    data: dict[str, Any]
    git: Git
    issues: list[dict[str, Any]] = field(default_factory=list)  # pull requests included
    pulls: list[dict[str, Any]] = field(default_factory=list)
    pull_commits: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    numbers: int = 0

    def next_number(self) -> int:
        self.numbers += 1
        return self.numbers


class FakeGitHub(FakeServer):
    """A fake GitHub API at `url` (the API root, like https://api.github.com)."""

    def __init__(
        self,
        *,
        token: str = "ghp_FakeGitHubToken0123456789",
        login: str = "octocat",
        orgs: Iterable[str] | None = None,
    ) -> None:
        super().__init__(token=token, login=login)
        self.orgs = set(orgs) if orgs is not None else None  # None: every org exists
        self.repos: dict[str, _Repo] = {}  # by lower-case full name, as GitHub ignores case
        self.user = {"login": login, "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User",
                     "name": login.title(), "site_admin": False}  # fmt: skip

    # -- seeding -----------------------------------------------------------------------

    def add_repo(
        self,
        full_name: str,
        *,
        private: bool = False,
        description: str | None = None,
        default_branch: str = "main",
        files: Mapping[str, str | bytes] | None = None,
    ) -> dict[str, Any]:
        """A repository (with one commit holding `files` when given); returns its JSON."""
        owner, name = full_name.split("/")
        if full_name.lower() in self.repos:
            raise ValueError(f"{full_name} exists")
        web_url = f"{self.root}/{owner}/{name}"
        data = {
            "id": self.next_id(), "node_id": f"R_{self._ids}", "name": name,
            "full_name": full_name, "private": private, "description": description,
            "owner": self._account(owner), "html_url": web_url, "fork": False,
            "url": f"{self.url}/repos/{owner}/{name}", "clone_url": f"{web_url}.git",
            "git_url": f"git://{web_url.split('://')[1]}.git",
            "ssh_url": f"git@fake:{full_name}.git",
            "default_branch": default_branch, "visibility": "private" if private else "public",
            "created_at": now_iso(), "updated_at": now_iso(), "pushed_at": None,
            "archived": False, "has_issues": True, "topics": [],
        }  # fmt: skip
        repo = _Repo(data, Git(default_branch))
        self.repos[full_name.lower()] = repo
        if files:
            self._commit(repo, default_branch, encode_files(files), "Initial commit")
        return data

    def add_commit(
        self,
        full_name: str,
        message: str = "a change",
        *,
        files: Mapping[str, str | bytes | None] | None = None,
        branch: str | None = None,
        date: datetime | str | None = None,
        author: tuple[str, str] = ("Mona Lisa", "mona@example.com"),
        author_login: str | None = None,
    ) -> dict[str, Any]:
        """A commit on `branch` (default branch); returns it as the commits API lists it."""
        repo = self._repo_named(full_name)
        commit = self._commit(
            repo, branch or repo.git.default_branch, encode_files(files or {}), message,
            author=author, date=iso(date), login=author_login,
        )  # fmt: skip
        return self._commit_json(repo, commit)

    def add_issue(self, full_name: str, title: str = "an issue", **fields: Any) -> dict[str, Any]:
        """An issue; `fields` override its JSON (state, body, labels as names, user as login,
        created_at/updated_at/closed_at as datetime or ISO strings...)."""
        repo = self._repo_named(full_name)
        issue = self._issue_json(repo, title, fields)
        repo.issues.append(issue)
        return issue

    def add_pull(
        self,
        full_name: str,
        title: str = "a change",
        *,
        head: str = "feature",
        base: str | None = None,
        commits: Sequence[str | Mapping[str, Any]] = (),
        **fields: Any,
    ) -> dict[str, Any]:
        """A pull request and its issue; `commits` are messages or add_commit() results.
        merged_at implies state "closed"."""
        repo = self._repo_named(full_name)
        base = base or repo.git.default_branch
        if fields.get("merged_at"):
            fields.setdefault("state", "closed")
            fields.setdefault("closed_at", fields["merged_at"])
        issue = self._issue_json(repo, title, fields)
        number, api = issue["number"], self._repo_api(repo)
        pr_commits: list[dict[str, Any]] = []
        for item in commits:
            if isinstance(item, str):  # on refs/pull/N/head, branched from base
                made = repo.git.commit(
                    f"pull/{number}/head", {}, item, start=base, login=self.login
                )
                item = self._commit_json(repo, made)
            pr_commits.append(dict(item))
        repo.pull_commits[number] = pr_commits
        head_sha = pr_commits[-1]["sha"] if pr_commits else blob_sha(f"{head}{number}".encode())
        base_commit = repo.git.resolve(base)
        minimal = {"id": repo.data["id"], "name": repo.data["name"],
                   "full_name": repo.data["full_name"]}  # fmt: skip
        pull = {
            **{k: issue[k] for k in ("number", "title", "state", "body", "user", "labels",
                                     "created_at", "updated_at", "closed_at", "node_id")},
            "id": self.next_id(), "url": f"{api}/pulls/{number}",
            "html_url": f"{self.root}/{repo.data['full_name']}/pull/{number}",
            "diff_url": f"{self.root}/{repo.data['full_name']}/pull/{number}.diff",
            "issue_url": issue["url"], "commits_url": f"{api}/pulls/{number}/commits",
            "merged_at": iso(fields["merged_at"]) if fields.get("merged_at") else None,
            "merge_commit_sha": fields.get("merge_commit_sha"),
            "draft": fields.get("draft", False),
            "head": {"ref": head, "sha": head_sha, "label": f"{self.login}:{head}",
                     "repo": minimal},
            "base": {"ref": base, "sha": base_commit.sha if base_commit else None,
                     "label": f"{self.login}:{base}", "repo": minimal},
            "author_association": "OWNER",
        }  # fmt: skip
        issue["pull_request"] = {k: pull[k] for k in ("url", "html_url", "diff_url", "merged_at")}
        repo.issues.append(issue)
        repo.pulls.append(pull)
        return pull

    def add_run(self, full_name: str, **fields: Any) -> dict[str, Any]:
        """An Actions workflow run; `fields` override its JSON (status, conclusion, event,
        head_branch, head_sha, name, created_at...)."""
        repo = self._repo_named(full_name)
        head_branch = fields.get("head_branch", repo.git.default_branch)
        head = repo.git.resolve(head_branch)
        created = iso(fields.pop("created_at", None))
        run_id = self.next_id()
        run = {
            "id": run_id, "node_id": f"WFR_{run_id}", "name": "CI", "display_title": "CI",
            "head_branch": head_branch, "head_sha": head.sha if head else blob_sha(b"%d" % run_id),
            "path": ".github/workflows/ci.yml", "run_number": len(repo.runs) + 1,
            "run_attempt": 1, "event": "push", "status": "completed", "conclusion": "success",
            "workflow_id": 1, "check_suite_id": run_id, "created_at": created,
            "updated_at": created, "run_started_at": created, "actor": self._account(self.login),
            "url": f"{self._repo_api(repo)}/actions/runs/{run_id}",
            "html_url": f"{self.root}/{repo.data['full_name']}/actions/runs/{run_id}",
            "repository": {"id": repo.data["id"], "name": repo.data["name"],
                           "full_name": repo.data["full_name"]},
        }  # fmt: skip
        run.update({k: iso(v) if k.endswith("_at") else v for k, v in fields.items()})
        repo.runs.append(run)
        return run

    # -- FakeServer hooks --------------------------------------------------------------

    def _authenticated(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() in ("bearer", "token") and value.strip() == self.token

    def _unauthorized(self) -> web.Response:
        payload = {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
        return web.json_response(payload, status=401)

    def _not_found(self) -> web.Response:
        return web.json_response(NOT_FOUND, status=404)

    def _throttled(self, retry_after: float) -> web.Response:
        payload = {"message": SECONDARY, "documentation_url": f"{DOCS}/rate-limit"}
        return web.json_response(payload, status=403, headers={"Retry-After": f"{retry_after:g}"})

    def _rate_limit_refusal(self) -> web.Response:
        message = f"API rate limit exceeded for user ID {self.user['id']}."
        return web.json_response({"message": message, "documentation_url": DOCS}, status=403)

    def _rate_limit_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit_remaining, 0)),
            "X-RateLimit-Reset": str(int(self.rate_limit_reset)),
            "X-RateLimit-Used": str(self.rate_limit_limit - max(self.rate_limit_remaining, 0)),
            "X-RateLimit-Resource": "core",
        }

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        repo = "/repos/{owner}/{name}"
        router.add_get("/user", self._get_user)
        router.add_get("/rate_limit", self._get_rate_limit)
        router.add_route("*", "/user/repos", self._user_repos)
        router.add_route("*", "/orgs/{org}/repos", self._org_repos)
        router.add_get("/users/{owner}/repos", self._list_owner_repos)
        router.add_route("*", repo, self._one_repo)
        router.add_route("*", repo + "/contents", self._contents)
        router.add_route("*", repo + "/contents/{path:.*}", self._contents)
        router.add_get(repo + "/git/trees/{ref:.+}", self._get_tree)
        router.add_get(repo + "/commits", self._list_commits)
        router.add_get(repo + "/issues", self._list_issues)
        router.add_get(repo + "/pulls", self._list_pulls)
        router.add_get(repo + "/pulls/{number:\\d+}", self._get_pull)
        router.add_get(repo + "/pulls/{number:\\d+}/commits", self._list_pull_commits)
        router.add_get(repo + "/actions/runs", self._list_runs)

    # -- handlers ----------------------------------------------------------------------

    async def _get_user(self, request: web.Request) -> web.Response:
        return web.json_response(self.user)

    async def _get_rate_limit(self, request: web.Request) -> web.Response:
        core = {"limit": self.rate_limit_limit, "remaining": self.rate_limit_remaining,
                "reset": self.rate_limit_reset, "used": 0}  # fmt: skip
        return web.json_response({"resources": {"core": core}, "rate": core})

    async def _user_repos(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            return await self._create_repo(request, self.login)
        return self._list(request, [r.data for r in self.repos.values()
                                    if r.data["owner"]["login"] == self.login])  # fmt: skip

    async def _org_repos(self, request: web.Request) -> web.Response:
        org = request.match_info["org"]
        if self.orgs is not None and org not in self.orgs:
            raise ApiError(404, NOT_FOUND)
        if request.method == "POST":
            return await self._create_repo(request, org)
        return await self._list_owner_repos(request)

    async def _list_owner_repos(self, request: web.Request) -> web.Response:
        owner = (request.match_info.get("org") or request.match_info["owner"]).lower()
        repos = [r.data for r in self.repos.values() if r.data["owner"]["login"].lower() == owner]
        return self._list(request, repos)

    async def _create_repo(self, request: web.Request, owner: str) -> web.Response:
        params = await read_params(request)
        name = params.get("name")
        if not name:
            raise _invalid("name")
        if f"{owner}/{name}".lower() in self.repos:
            raise ApiError(422, {
                "message": "Repository creation failed.", "documentation_url": DOCS,
                "errors": [{"resource": "Repository", "code": "custom", "field": "name",
                            "message": "name already exists on this account"}],
            })  # fmt: skip
        files = {"README.md": f"# {name}\n{params.get('description') or ''}\n"}
        data = self.add_repo(
            f"{owner}/{name}", private=bool(params.get("private", False)),
            description=params.get("description"),
            files=files if params.get("auto_init") else None,
        )  # fmt: skip
        return web.json_response(data, status=201)

    async def _one_repo(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if request.method == "DELETE":
            del self.repos[repo.data["full_name"].lower()]
            return web.Response(status=204)
        if request.method == "PATCH":
            params = await read_params(request)
            for key in ("description", "private", "has_issues", "homepage", "default_branch"):
                if key in params:
                    repo.data[key] = params[key]
            repo.data["visibility"] = "private" if repo.data["private"] else "public"
            repo.git.default_branch = repo.data["default_branch"]
        elif request.method != "GET":
            raise ApiError(404, NOT_FOUND)
        return web.json_response(repo.data)

    async def _contents(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        path = request.match_info.get("path", "").strip("/")
        if request.method == "GET":
            return self._get_contents(request, repo, path)
        if request.method not in ("PUT", "DELETE"):
            raise ApiError(404, NOT_FOUND)
        params = await read_params(request)
        if not params.get("message"):
            raise _invalid("message")
        if request.method == "PUT" and not isinstance(params.get("content"), str):
            raise _invalid("content")
        if request.method == "DELETE" and not params.get("sha"):
            raise _invalid("sha")
        branch = params.get("branch") or repo.git.default_branch
        head = repo.git.resolve(branch)
        if head is None and not repo.git.empty:
            raise ApiError(
                404, {"message": f"Branch {branch} not found", "documentation_url": DOCS}
            )
        current = head.files.get(path) if head else None
        if request.method == "DELETE" and current is None:
            raise ApiError(404, NOT_FOUND)
        if current is not None and not params.get("sha"):
            raise _invalid("sha")
        if current is not None and params["sha"] != blob_sha(current):
            raise ApiError(409, {"message": f"{path} does not match {params['sha']}",
                                 "documentation_url": DOCS, "status": "409"})  # fmt: skip
        if request.method == "DELETE":
            commit = self._commit(repo, branch, {path: None}, params["message"])
            return web.json_response({"content": None, "commit": self._git_commit(repo, commit)})
        try:
            data = base64.b64decode(params["content"], validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, {"message": "content is not valid Base64",
                                 "documentation_url": DOCS}) from None  # fmt: skip
        author = params.get("author") or params.get("committer") or {}
        commit = self._commit(
            repo, branch, {path: data}, params["message"],
            author=(author.get("name", self.user["name"]), author.get("email", "o@example.com")),
        )  # fmt: skip
        content = self._file_json(repo, path, data, branch)
        del content["content"], content["encoding"]
        body = {"content": content, "commit": self._git_commit(repo, commit)}
        return web.json_response(body, status=201 if current is None else 200)

    def _get_contents(self, request: web.Request, repo: _Repo, path: str) -> web.Response:
        ref = request.query.get("ref")
        commit = repo.git.resolve(ref)
        if commit is None:
            if repo.git.empty:
                raise ApiError(404, {"message": "This repository is empty.",
                                     "documentation_url": DOCS})  # fmt: skip
            raise ApiError(404, {"message": f"No commit found for the ref {ref}",
                                 "documentation_url": DOCS})  # fmt: skip
        ref = ref or repo.git.default_branch
        if path in commit.files:
            return web.json_response(self._file_json(repo, path, commit.files[path], ref))
        if path and not repo.git.is_dir(commit, path):
            raise ApiError(404, NOT_FOUND)
        listing = []
        for entry in repo.git.tree(commit, recursive=False, path=path):
            item = self._file_json(repo, entry["path"], commit.files.get(entry["path"], b""), ref)
            del item["content"], item["encoding"]
            item.update(type="file" if entry["type"] == "blob" else "dir", sha=entry["sha"])
            listing.append(item)
        return web.json_response(listing)

    async def _get_tree(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        ref = request.match_info["ref"]
        if repo.git.empty:
            raise ApiError(409, EMPTY_REPO)
        commit = repo.git.resolve(ref) or next(
            (c for c in repo.git.commits.values() if c.tree_sha == ref), None
        )
        if commit is None:
            raise ApiError(404, NOT_FOUND)
        recursive = request.query.get("recursive", "") not in ("", "0", "false")
        api = self._repo_api(repo)
        tree = [
            {"path": e["path"], "mode": "100644" if e["type"] == "blob" else "040000",
             "type": e["type"], "sha": e["sha"], **({"size": e["size"]} if "size" in e else {}),
             "url": f"{api}/git/{e['type']}s/{e['sha']}"}
            for e in repo.git.tree(commit, recursive=recursive)
        ]  # fmt: skip
        return web.json_response({"sha": commit.tree_sha, "url": f"{api}/git/trees/{ref}",
                                  "tree": tree, "truncated": False})  # fmt: skip

    async def _list_commits(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if repo.git.empty:
            raise ApiError(409, EMPTY_REPO)
        ref = request.query.get("sha")
        if repo.git.resolve(ref) is None:
            raise ApiError(404, {"message": f"No commit found for SHA: {ref}",
                                 "documentation_url": DOCS})  # fmt: skip
        since, until, path = (request.query.get(k) for k in ("since", "until", "path"))
        commits = [
            self._commit_json(repo, c) for c in repo.git.log(ref)
            if _in_range(c.date, since, until)
            and (not path or repo.git.last_commit_for(path, c.sha) is c)
        ]  # fmt: skip
        return self._list(request, commits)

    async def _list_issues(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        q = request.query
        labels = {name for name in q.get("labels", "").split(",") if name}
        issues = [
            i for i in repo.issues
            if q.get("state", "open") in ("all", i["state"])
            and _in_range(i["updated_at"], q.get("since"), None)
            and labels <= {label["name"] for label in i["labels"]}
        ]  # fmt: skip
        return self._list(request, _sorted(issues, q, "created"))

    async def _list_pulls(self, request: web.Request) -> web.Response:
        q = request.query
        pulls = [
            p for p in self._repo(request).pulls
            if q.get("state", "open") in ("all", p["state"])
            and q.get("base", p["base"]["ref"]) == p["base"]["ref"]
            and q.get("head", p["head"]["label"]) in (p["head"]["label"], p["head"]["ref"])
        ]  # fmt: skip
        return self._list(request, _sorted(pulls, q, "created"))

    async def _get_pull(self, request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        for pull in self._repo(request).pulls:
            if pull["number"] == number:
                return web.json_response(pull)
        raise ApiError(404, NOT_FOUND)

    async def _list_pull_commits(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        number = int(request.match_info["number"])
        if number not in repo.pull_commits:
            raise ApiError(404, NOT_FOUND)
        return self._list(request, repo.pull_commits[number][:250])  # GitHub's cap

    async def _list_runs(self, request: web.Request) -> web.Response:
        q = request.query
        created = q.get("created", "")
        low, _, high = created.removeprefix(">=").partition("..")
        runs = [
            r for r in self._repo(request).runs
            if all(q.get(k, r[k]) == r[k] for k in ("event", "head_sha", "actor"))
            and q.get("branch", r["head_branch"]) == r["head_branch"]
            and q.get("status") in (None, r["status"], r["conclusion"])
            and _in_range(r["created_at"], low or None, high or None)
        ]  # fmt: skip
        runs.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
        page = self.paginate(request, runs, default=30)
        return web.json_response(
            {"total_count": len(runs), "workflow_runs": page.items},
            headers=self.link_header(request, page),
        )

    # -- helpers -----------------------------------------------------------------------

    def _list(self, request: web.Request, items: Sequence[Any]) -> web.Response:
        page = self.paginate(request, items, default=30)
        return web.json_response(page.items, headers=self.link_header(request, page))

    def _repo(self, request: web.Request) -> _Repo:
        key = f"{request.match_info['owner']}/{request.match_info['name']}".lower()
        if key not in self.repos:
            raise ApiError(404, NOT_FOUND)
        return self.repos[key]

    def _repo_named(self, full_name: str) -> _Repo:
        if full_name.lower() not in self.repos:
            self.add_repo(full_name)
        return self.repos[full_name.lower()]

    def _repo_api(self, repo: _Repo) -> str:
        return f"{self.url}/repos/{repo.data['full_name']}"

    def _account(self, login: str) -> dict[str, Any]:
        if login == self.login:
            return {k: self.user[k] for k in ("login", "id", "node_id", "type", "site_admin")}
        return {"login": login, "id": zlib.crc32(login.encode()) % 10**6, "type": "Organization"}

    def _commit(
        self, repo: _Repo, branch: str, changes: Mapping[str, bytes | None], message: str,
        **kw: Any,
    ) -> Commit:  # fmt: skip
        kw.setdefault("login", self.login)
        commit = repo.git.commit(branch, changes, message, **kw)
        repo.data["pushed_at"] = repo.data["updated_at"] = commit.date
        return commit

    def _git_commit(self, repo: _Repo, commit: Commit) -> dict[str, Any]:
        person = {"name": commit.author_name, "email": commit.author_email, "date": commit.date}
        api = self._repo_api(repo)
        return {
            "sha": commit.sha, "node_id": f"C_{commit.sha[:12]}",
            "url": f"{api}/git/commits/{commit.sha}",
            "html_url": f"{self.root}/{repo.data['full_name']}/commit/{commit.sha}",
            "author": person, "committer": person, "message": commit.message,
            "tree": {"sha": commit.tree_sha, "url": f"{api}/git/trees/{commit.tree_sha}"},
            "parents": [{"sha": p, "url": f"{api}/commits/{p}"} for p in commit.parents],
        }  # fmt: skip

    def _commit_json(self, repo: _Repo, commit: Commit) -> dict[str, Any]:
        git = self._git_commit(repo, commit)
        login = commit.extra.get("login")
        user = self._account(login) if login else None
        return {
            "sha": commit.sha, "node_id": git["node_id"],
            "url": f"{self._repo_api(repo)}/commits/{commit.sha}",
            "html_url": git["html_url"], "author": user, "committer": user,
            "commit": {k: git[k] for k in ("author", "committer", "message", "tree", "url")}
            | {"comment_count": 0},
            "parents": [dict(p, html_url=f"{self.root}/{repo.data['full_name']}/commit/{p['sha']}")
                        for p in git["parents"]],
        }  # fmt: skip

    def _file_json(self, repo: _Repo, path: str, data: bytes, ref: str) -> dict[str, Any]:
        api, sha = self._repo_api(repo), blob_sha(data)
        html = f"{self.root}/{repo.data['full_name']}/blob/{ref}/{path}"
        return {
            "type": "file", "encoding": "base64", "size": len(data),
            "name": path.rsplit("/", 1)[-1],
            "path": path, "content": b64(data, wrap=60), "sha": sha,
            "url": f"{api}/contents/{path}?ref={ref}", "git_url": f"{api}/git/blobs/{sha}",
            "html_url": html,
            "download_url": f"{self.root}/raw/{repo.data['full_name']}/{ref}/{path}",
            "_links": {"self": f"{api}/contents/{path}?ref={ref}", "git": f"{api}/git/blobs/{sha}",
                       "html": html},
        }  # fmt: skip

    def _issue_json(self, repo: _Repo, title: str, fields: dict[str, Any]) -> dict[str, Any]:
        number = repo.next_number()
        created = iso(fields.pop("created_at", None))
        state = fields.pop("state", "open")
        user = fields.pop("user", self.login)
        labels = [{"id": self.next_id(), "name": n, "color": "ededed"}
                  for n in fields.pop("labels", ())]  # fmt: skip
        api = self._repo_api(repo)
        issue = {
            "id": self.next_id(), "node_id": f"I_{self._ids}", "number": number, "title": title,
            "state": state, "state_reason": "completed" if state == "closed" else None,
            "body": None, "user": self._account(user) if isinstance(user, str) else user,
            "labels": labels, "assignee": None, "assignees": [], "comments": 0, "locked": False,
            "created_at": created, "updated_at": created,
            "closed_at": created if state == "closed" else None, "author_association": "OWNER",
            "url": f"{api}/issues/{number}", "repository_url": api,
            "html_url": f"{self.root}/{repo.data['full_name']}/issues/{number}",
        }  # fmt: skip
        issue.update({k: iso(v) if k.endswith("_at") and v else v for k, v in fields.items()
                      if k not in ("merged_at", "merge_commit_sha", "draft")})  # fmt: skip
        return issue


def _in_range(stamp: str, since: str | None, until: str | None) -> bool:
    when = parse_iso(stamp)
    return (not since or when >= parse_iso(since)) and (not until or when <= parse_iso(until))


def _sorted(items: list[dict[str, Any]], q: Mapping[str, str], default: str) -> list[Any]:
    key = {"created": "created_at", "updated": "updated_at", "comments": "comments"}.get(
        q.get("sort", default), "created_at"
    )
    descending = q.get("direction", "desc") != "asc"
    return sorted(items, key=lambda i: (i.get(key) or "", i["number"]), reverse=descending)
