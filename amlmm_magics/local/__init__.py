"""The embedded Model Management backend (daemon)."""
