"""comparison-pipeline: catalogue → gather → prompt → generate → validate → store → render."""

__version__ = "0.1.0"
