"""Training chip datasets: where chips are cut, which split each goes to, and their folder layout."""
