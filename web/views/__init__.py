"""Pages that combine several apps: organisation overviews, alerts, data exports."""
