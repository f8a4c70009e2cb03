"""The applications service: applications and their documents, the program catalogue, and the
status the grant workflows report."""
