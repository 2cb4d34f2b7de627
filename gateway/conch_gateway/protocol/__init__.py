"""Request and response types, one module per API dialect."""
