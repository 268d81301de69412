"""payrail entitlements service."""
