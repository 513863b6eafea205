"""Django admin: warnings."""
