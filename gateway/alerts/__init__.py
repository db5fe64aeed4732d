"""Budget alerts: thresholds crossed become events in a durable outbox, delivered by webhook."""
