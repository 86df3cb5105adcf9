"""Label rules (mask values, class values, overlaps) and matching reference classes to model classes."""
