"""Reference implementations, one module per chapter topic: the one source of truth for the
chapters' solution cells and the autograder's oracle."""
