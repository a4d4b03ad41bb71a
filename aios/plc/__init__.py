"""Talking to PLCs: the Modbus data model, a client with the protocol's limits built in, and a
simulator.

* :mod:`aios.plc.modbus` — data types, word/byte orders, register encoding, addresses and
  Modicon references, request splitting; pure functions, no I/O.
* :mod:`aios.plc.client` — connection settings (Modbus TCP, Modbus RTU) and a synchronous
  client over pymodbus that splits long requests and turns library failures into
  :class:`aios.plc.client.ModbusError` subclasses.
* :mod:`aios.plc.simulator` — a pymodbus server on loopback with coils and holding
  registers, for tests and the shipped example.

Used by the ``aios/plc_write@1`` node and, on site, by the connector.
"""
