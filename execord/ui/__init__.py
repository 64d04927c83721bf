"""The web viewer at ``/ui``: triage in the browser on top of the server's store (docs/viewer.md).

`create_ui` builds it; `execord.server.create_app` mounts it. Templates and static files
ship inside this package: no CDN, no build step, works offline.
"""

from ._app import create_ui

__all__ = ["create_ui"]
