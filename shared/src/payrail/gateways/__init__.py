"""Gateway families (one package per gateway) and the registry that resolves them by name."""
