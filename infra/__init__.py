"""How Grantflow is run: infra/local is the embedded stack (no containers)."""
