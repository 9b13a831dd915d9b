"""The sans-I/O core: the ``wsdemo.v1`` contract and the rules behind it.

* :mod:`~wsdemo.core.protocol` — messages, validation, error and close codes;
* :mod:`~wsdemo.core.eventlog` — seq, resume and dedupe rules, and the in-memory log;
* :mod:`~wsdemo.core.controls` — what a control accepts (kind, limits, step);
* :mod:`~wsdemo.core.access` — the access hook: who may read, publish and set.

Nothing here opens a socket, starts a loop or imports Tornado (``tests/test_layers.py``
checks every module of this folder): objects and bytes in, objects and bytes out,
so a lesson can show each step and a test can drive it without a network.
"""
