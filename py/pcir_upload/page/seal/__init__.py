"""Stage 3 of the page: sealing the package to the repository's public key."""
