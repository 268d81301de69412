"""HTTP plumbing shared by the services: app factory, health, problem+json."""
