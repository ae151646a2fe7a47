"""The dashboard and admin console: server-rendered pages on the API port."""

from portability.dashboard.routes import dashboard_routes

__all__ = ["dashboard_routes"]
