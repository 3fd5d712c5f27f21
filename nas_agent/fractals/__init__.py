"""Synthetic pre-training data: neural fractals (render), reverse stylization (stylize, encoder),
the domain gap (kid), datasets on disk (dataset), and pre-train -> fine-tune variants (pretrain)."""
