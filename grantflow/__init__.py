"""Grantflow: the command-line client and the generated API code (grantflow.v1)."""
