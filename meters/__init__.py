"""Meters, service points, readings, imports, validation, rollups and meter events."""
