"""The event tier: what happens after the stream tier detects something.

Per event, conditions, loops, waits, storage, transforms and actions run as one execution of
a state machine compiled to Amazon States Language (:mod:`aios.events.compiler`). In the
cloud that definition runs on Step Functions; on one machine it runs on the local engine
(:mod:`aios.events.engine`) with every Task bound in-process to the node implementation.
"""
