"""Meter models arrive with the readings issue (#3); the app exists so the layers are fixed."""
