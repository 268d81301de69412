"""payrail webhook-ingest service."""
