"""GitHub: App authentication and the API client (webhook verification is in ``app.intake``)."""
