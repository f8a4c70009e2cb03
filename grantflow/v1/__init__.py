"""Generated from protos/grantflow/v1 by `make protos`; do not edit."""
