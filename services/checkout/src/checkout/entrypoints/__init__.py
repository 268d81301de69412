"""How work reaches checkout: the HTTP API and the Kafka consumers."""
