"""The API's routers, one per resource, all under ``/api/v1`` (DESIGN §7)."""
