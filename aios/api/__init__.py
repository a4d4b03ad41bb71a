"""The REST API under ``/api/v1``: one Powertools resolver for API Gateway REST proxy
events, served by Lambda in the cloud and by ``aios up``'s HTTP adapter on one machine.

- :mod:`aios.api.app` — :func:`~aios.api.app.create_app` and the Lambda
  :func:`~aios.api.app.handler`.
- :mod:`aios.api.auth` — passwords, tokens, login throttling, the first admin.
- :mod:`aios.api.permissions` — the one table of who may call what.
- :mod:`aios.api.errors` — the JSON error shape and the mapping of domain errors.
- :mod:`aios.api.models` — request and response bodies.
- :mod:`aios.api.routes` — the routes, one module per area.
"""
