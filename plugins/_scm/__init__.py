"""Shared helpers of the SCM plugins (repo-scaffolding, github-actions, gitlab-ci).

Not a plugin itself (it has no plugin.yaml, so discovery skips it): local git through the
real `git` binary (`git`), the GitHub contents and git-trees APIs (`github`), and the option
schema fragments and checks the plugins have in common (`options`).
"""
