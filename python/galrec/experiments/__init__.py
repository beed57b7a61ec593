"""Models by name (the registry) and comparisons of them (``galrec compare``)."""
