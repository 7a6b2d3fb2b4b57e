"""Stage 2 of the page: the contribution's ZIP package and its manifest."""
