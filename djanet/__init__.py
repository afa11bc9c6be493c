"""DJANet for visible-infrared person re-identification.

Modules, one concern each: `config` (presets), `data` (synthetic data, readers,
sampler, augmentations), `backbone`/`mamba`/`align`/`model` (the network),
`losses`, `metrics`/`protocols` (evaluation), `runtime` (device, model from a checkpoint)
below `evaluate` below `train` (the engine),
`cyclegan` and `translate` (image-level alignment), `gap` and `viz` (analysis for the book),
`study`, `stats`, `report` and `provenance` (the ablation over seeds and how the book reads it),
`console` (progress and paths as a reader sees them), `book` (the notebooks' one setup call).
"""
from .config import get_config

__version__ = "0.1.0"
__all__ = ["get_config", "__version__"]
