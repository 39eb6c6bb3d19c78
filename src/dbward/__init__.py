"""dbward: identity-aware access proxy for databases."""

__version__ = "0.1.0"
