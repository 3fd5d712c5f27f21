"""Fractal generative models: the img-generation task, its trainer, smoke check, sampler and search space.

Candidates of this family (templates/fractal_gen.py) follow the same LEMUR contract as the
classifiers, with `forward(x)` returning each uint8 image's negative log-likelihood in nats;
they are scored in bits per dimension (metric `bpd`, lower is better).
"""

from nas_agent.generative.task import (
    BPD_METRIC,
    BPD_METRIC_CODE,
    GENERATION_OUT_SHAPE,
    TASK_GENERATION,
    bits_per_dim,
    is_generative,
)

__all__ = ["BPD_METRIC", "BPD_METRIC_CODE", "GENERATION_OUT_SHAPE", "TASK_GENERATION", "bits_per_dim",
           "is_generative"]
