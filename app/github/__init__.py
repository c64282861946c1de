"""GitHub: App authentication, the API client, and webhook verification."""
