"""aibox network."""
