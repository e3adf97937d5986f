"""repo-scaffolding: a repository created from a template repository (local git or GitHub)."""

from plugins.repo_scaffolding.plugin import RepoScaffolding

__all__ = ["RepoScaffolding"]
