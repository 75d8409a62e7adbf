"""aibox sandbox."""
