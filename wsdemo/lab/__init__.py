"""The failure lab (I/O): the nine things WebSocket does not give you, as experiments.

* :mod:`~wsdemo.lab.experiments` — the experiments, their results and the scoreboard;
* :mod:`~wsdemo.lab.targets` — what an experiment runs against (bare Tornado, the channel);
* :mod:`~wsdemo.lab.bare` — the bare Tornado broadcast server, the "before" of every lesson;
* :mod:`~wsdemo.lab.keepalive` — lesson 02's polling, long polling, SSE and WebSocket,
  side by side;
* :mod:`~wsdemo.lab.sse` — the ``text/event-stream`` format, written and read (no sockets);
* :mod:`~wsdemo.lab.conversation` — lesson 02's sequence diagrams on a time axis.

``from wsdemo import lab`` gives the experiments' names (``lab.missed_messages``,
``lab.BareTarget``, …); ``python -m wsdemo.lab`` runs them from a shell.
"""

from .experiments import *  # noqa: F403 (the lab's surface is the experiments' __all__)
from .experiments import __all__  # noqa: F401
