"""Grantflow's test suite: unit, workflows, replay, integration, e2e."""
