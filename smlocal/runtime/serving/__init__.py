"""Model serving: the in-sandbox worker (``worker``), its handlers and codecs, and the pure plan of
how a model container is served (``plan``). The host side is :mod:`smlocal.runtime.model_server`."""
