"""The node catalog: every node type AIOS offers, registered explicitly.

One module per node type; each exposes ``NODE`` (a :class:`aios.catalog.base.NodeType`).
A module that is not listed here is not in the catalog — a test checks that every node
module is listed, and :class:`aios.catalog.registry.Catalog` rejects duplicate ids.
"""

from __future__ import annotations

from aios.catalog.registry import Catalog
from aios.nodes import (
    analytics,
    camera_device,
    camera_rtsp,
    camera_webcam,
    conditional,
    counter,
    custom_model,
    cv,
    dashboard,
    delay,
    email,
    file_input,
    http_post,
    line_crossing,
    loitering,
    loop,
    motion_gate,
    object_detection,
    plc_write,
    sensor_data,
    storage,
    telegram,
    timer,
    transform,
    webhook,
    whatsapp,
    zone,
)

NODE_MODULES = (
    # input
    camera_rtsp,
    camera_device,
    camera_webcam,
    file_input,
    sensor_data,
    webhook,
    timer,
    # processing
    motion_gate,
    object_detection,
    transform,
    analytics,
    cv,
    custom_model,
    # logic
    zone,
    line_crossing,
    loitering,
    counter,
    conditional,
    loop,
    delay,
    storage,
    # output
    dashboard,
    email,
    plc_write,
    http_post,
    telegram,
    whatsapp,
)

CATALOG = Catalog(module.NODE for module in NODE_MODULES)
"""The catalog served by ``aios nodes`` and the API."""
