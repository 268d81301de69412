"""checkout's edge: its tables and the repositories that map rows to the domain and back."""
