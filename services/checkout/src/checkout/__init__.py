"""payrail checkout service."""
