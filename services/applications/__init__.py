"""The applications service: applications and their documents, the program catalogue, and the
status projection built from the grant workflows' stage reports."""
