"""The plugins shipped with DevStream, each a package with a plugin.yaml manifest."""
