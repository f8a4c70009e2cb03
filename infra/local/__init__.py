"""The embedded stack: Temporal dev server, Tansu, the three services, the worker and consumers."""
