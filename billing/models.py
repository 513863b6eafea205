"""Billing models arrive with the billing issue (#4); the app exists so the layers are fixed."""
