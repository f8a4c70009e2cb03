"""Revisions of the review database."""
