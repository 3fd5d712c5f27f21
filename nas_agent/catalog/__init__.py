"""The SQLite catalog (LEMUR's tables plus lineage, status, runs and events); LEMUR export in `lemur`."""

from nas_agent.catalog.store import (
    EVENT_KINDS,
    MODEL_STATUSES,
    RUN_STATUSES,
    TASK_CLASSIFICATION,
    Catalog,
    CatalogError,
    EpochRecord,
    ModelRecord,
    lemur_name,
    prm_uid,
)

__all__ = [
    "EVENT_KINDS",
    "MODEL_STATUSES",
    "RUN_STATUSES",
    "TASK_CLASSIFICATION",
    "Catalog",
    "CatalogError",
    "EpochRecord",
    "ModelRecord",
    "lemur_name",
    "prm_uid",
]
