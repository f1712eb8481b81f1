"""Entry points of every Strongroom program."""
