"""The Execord server: the REST API over SQLite or PostgreSQL (DESIGN §6, §7)."""

from ._app import BodyLimit, ServerSettings, create_app
from ._auth import Principal
from ._deps import Limits
from ._metrics import METRIC_NAMES

__all__ = ["METRIC_NAMES", "BodyLimit", "Limits", "Principal", "ServerSettings", "create_app"]
