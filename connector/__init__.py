"""The AIOS on-prem connector: bridges a site's cameras, PLCs and sensors to the platform.

Started as ``aios-connector --config connector.yaml`` (see :mod:`connector.cli`).
"""

__version__ = "0.1.0"
