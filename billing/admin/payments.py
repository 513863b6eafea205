"""Django admin: payments."""
