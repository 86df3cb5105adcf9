"""The rsdl Processing provider and its algorithms."""
