"""The benchmark (I/O): ``python -m wsdemo bench``, the channel against baselines in one run.

* :mod:`~wsdemo.bench.runner` — the scenarios, the table, the command line;
* :mod:`~wsdemo.bench.load` — the load generator (its own process: raw asyncio,
  frames pre-encoded with :mod:`wsdemo.wire`), ``python -m wsdemo.bench.load``;
* :mod:`~wsdemo.bench.servers` — every server measured, each in its own process,
  ``python -m wsdemo.bench.servers KIND``.

Nothing is imported here, so that each of those processes starts with only its own module.
"""
