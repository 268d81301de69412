"""checkout's use cases: commands in, domain changes and outgoing events out, one unit of work
per transaction."""
