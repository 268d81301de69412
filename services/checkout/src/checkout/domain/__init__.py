"""checkout's pure domain model: no I/O, no framework, only rules about money and state."""
