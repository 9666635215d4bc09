"""FastAPI app: ingest, feedback webhook, health, metrics."""
