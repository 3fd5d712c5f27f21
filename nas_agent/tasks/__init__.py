"""Task families: what each task is scored by, and the facts every stage shares about it.

The lowest layer above the plain values: it imports nothing of train, validate or search, which
each keep their own part of a family (the generative trainer in `train.generative`, its smoke
forward in `validate.generative_smoke`, its mutations in `search.generative_mutate`).
Fractal generative models (templates/fractal_gen.py) follow the same LEMUR contract as the
classifiers, with `forward(x)` returning each uint8 image's negative log-likelihood in nats;
they are scored in bits per dimension (metric `bpd`, lower is better).
"""

from nas_agent.tasks.generation import (
    BPD_METRIC,
    BPD_METRIC_CODE,
    GENERATION_OUT_SHAPE,
    TASK_GENERATION,
    bits_per_dim,
    is_generative,
)

__all__ = ["BPD_METRIC", "BPD_METRIC_CODE", "GENERATION_OUT_SHAPE", "TASK_GENERATION", "bits_per_dim",
           "is_generative"]
