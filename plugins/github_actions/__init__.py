"""github-actions: workflow files kept in .github/workflows/ of a local or GitHub repository."""

from plugins.github_actions.plugin import GitHubActions

__all__ = ["GitHubActions"]
