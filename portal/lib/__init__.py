"""Plain helpers with no models: environment, time, currencies."""
