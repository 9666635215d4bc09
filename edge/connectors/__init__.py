"""thingsboard-gateway connectors."""
