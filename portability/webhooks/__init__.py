"""Signed webhooks: endpoints users register, events from the outbox, deliveries with retries."""
