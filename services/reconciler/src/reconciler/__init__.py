"""payrail reconciler service."""
