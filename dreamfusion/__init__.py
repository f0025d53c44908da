"""dreamfusion: text (or image) to 3D by Score Distillation Sampling."""

__version__ = "0.1.0"
