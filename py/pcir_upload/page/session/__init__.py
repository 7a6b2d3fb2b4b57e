"""The page's session: the one marker it keeps, and the check that nothing else is left."""
