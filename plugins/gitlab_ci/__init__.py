"""gitlab-ci: a GitLab project's .gitlab-ci.yml, kept through the REST API v4."""

from plugins.gitlab_ci.plugin import GitLabCI

__all__ = ["GitLabCI"]
