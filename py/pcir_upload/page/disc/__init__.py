"""Stage 1 of the page: reading the disc and telling what is on it."""
