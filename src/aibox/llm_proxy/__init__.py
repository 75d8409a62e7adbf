"""aibox llm_proxy."""
