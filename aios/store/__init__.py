"""Service stores: ports (:mod:`aios.store.port`) and their adapters."""
