"""Reports for the analyst: matplotlib figures, charts, and evaluation tables and pages."""
