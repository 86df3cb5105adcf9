"""Desktop GUI pieces (toolbar actions); the only package that touches iface."""
