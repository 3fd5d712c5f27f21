"""The smoke run's forward pass for a generative candidate (called by the smoke worker, inside the sandbox)."""

from __future__ import annotations

import torch


def generative_forward(model: torch.nn.Module, batch: int, in_shape: tuple[int, ...],
                       generator: torch.Generator) -> tuple[torch.Tensor, object, torch.Tensor, str | None]:
    """Run forward on random uint8 images; return (output, structure, loss, what is wrong or None).

    A generator's forward must give one finite, non-negative NLL per image: a negative one
    means its distribution does not sum to one (a bits/dim that cannot be trusted).
    """
    from nas_agent.validate.structure import probe

    inputs = torch.randint(0, 256, (batch, *in_shape[1:]), generator=generator, dtype=torch.uint8)
    output, structure = probe(model, inputs)
    if tuple(output.shape) != (batch,):
        return output, structure, None, (f"forward returned shape {tuple(output.shape)}, expected ({batch},): "
                                         f"a generator returns one negative log-likelihood per image")
    if not torch.isfinite(output).all():
        return output, structure, None, "forward returned NaN or infinite NLL on random images"
    if (output < -1e-3).any():
        return output, structure, None, ("forward returned a negative NLL: the model's probabilities do "
                                         "not sum to one over the 256 values")
    return output, structure, output.float().mean(), None
