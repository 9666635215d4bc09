"""The cloud side: ingest API, realtime feedback and the workers that dispatch motor commands."""
