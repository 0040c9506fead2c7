"""The client: ``AsyncClient`` on the reactor, ``Client`` for plain threads, ``Job`` handles."""
