"""Stage 4 of the page: sending the sealed chunks, resumably."""
