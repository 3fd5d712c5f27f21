"""LEMUR's view of the catalog: `data()` returns what nn-dataset's `ab.nn.api.data()` returns."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from nas_agent.catalog.store import Catalog, CatalogError

DATA_COLUMNS = ("task", "dataset", "metric", "metric_code", "nn", "nn_code",
                "epoch", "accuracy", "duration", "prm", "transform_code")


def data(catalog: Catalog | str | os.PathLike, only_best_accuracy: bool = False,
         task: str | None = None, dataset: str | None = None, metric: str | None = None,
         nn: str | None = None, epoch: int | None = None) -> pd.DataFrame:
    """One row per recorded epoch, with LEMUR's columns; `duration` in ns, `prm` a dict.

    `only_best_accuracy` keeps the best row of each (task, dataset, metric, nn);
    the other arguments filter on equality. A path names an existing catalog file.
    """
    filters = dict(only_best_accuracy=only_best_accuracy, task=task, dataset=dataset,
                   metric=metric, nn=nn, epoch=epoch)
    if isinstance(catalog, Catalog):
        rows = catalog.lemur_rows(**filters)
    else:
        # Reading must not conjure an empty catalog out of a mistyped path.
        if not Path(catalog).is_file():
            raise CatalogError(f"no catalog at {catalog}")
        with Catalog(catalog) as cat:
            rows = cat.lemur_rows(**filters)
    return pd.DataFrame(rows, columns=list(DATA_COLUMNS))
