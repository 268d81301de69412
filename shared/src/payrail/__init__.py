"""payrail common library."""
