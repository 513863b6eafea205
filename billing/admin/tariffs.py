"""Django admin: tariffs."""
