"""Small helpers shared by the library: atomic file output and run records."""
