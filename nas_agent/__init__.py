"""nas-agent: LLM-assisted neural architecture search over fractal templates."""

__version__ = "0.1.0"
