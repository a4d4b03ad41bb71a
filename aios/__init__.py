"""AIOS: video analytics, fleet management and automation pipelines for cameras and plants."""

__version__ = "0.1.0"
