"""Fleet management: device status, registration, configuration, commands, alerts and the
ingestion of device messages (:mod:`aios.fleet.service`, :mod:`aios.fleet.status`,
:mod:`aios.fleet.ingest`)."""
