"""The session authority service."""
