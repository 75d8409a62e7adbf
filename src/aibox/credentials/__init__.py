"""aibox credentials."""
