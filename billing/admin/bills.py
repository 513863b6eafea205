"""Django admin: bills."""
