"""aibox policy."""
