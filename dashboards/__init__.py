"""The satchunk web dashboard: catalog, items with mask overlays, dataset charts and
job records, read-only over the store (through ``chunkstore``), fully offline."""

from ._app import make_app
from ._serve import Dashboard, start_dashboard

__all__ = ["Dashboard", "make_app", "start_dashboard"]
