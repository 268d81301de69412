"""The ``payrail`` operator CLI."""
