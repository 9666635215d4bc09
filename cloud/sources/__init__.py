"""Gift sources: adapters, streak counting and the ingest client that feed the durable ingest path."""
