"""Synthetic pre-training data: neural fractals (render), reverse stylization (stylize, encoder),
the domain gap (kid) and datasets on disk (dataset). Data only: the pre-train -> fine-tune
pipeline is nas_agent.search.pretrain, the commands nas_agent.cli.fractals."""
