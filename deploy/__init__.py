"""Deployment: the topology (.env), its renderings, the local launcher and the CLI."""
