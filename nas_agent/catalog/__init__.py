"""The SQLite catalog: its schema and migrations (schema), the values it stores (records), the store
itself (store), read views (browse) and LEMUR's data() and folder layout (lemur, lemur_io)."""

from nas_agent.catalog.records import (
    EVENT_KINDS,
    MODEL_STATUSES,
    RUN_STATUSES,
    TASK_CLASSIFICATION,
    EpochRecord,
    ModelRecord,
    lemur_id,
    model_name,
    prm_uid,
)
from nas_agent.catalog.store import Catalog, CatalogError

__all__ = [
    "EVENT_KINDS",
    "MODEL_STATUSES",
    "RUN_STATUSES",
    "TASK_CLASSIFICATION",
    "Catalog",
    "CatalogError",
    "EpochRecord",
    "ModelRecord",
    "lemur_id",
    "model_name",
    "prm_uid",
]
