"""replay tests."""
