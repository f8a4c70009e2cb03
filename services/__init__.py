"""Grantflow's gRPC services: applications, review, disbursement, and what they share (common)."""
