"""Developer scripts (build, demo, sample data); importable by the tests."""
