"""Fakes shared by the transport-free JobServer tests."""
from twisted.internet.defer import succeed


class Link:
    """A worker's link as the server sees it; records the run batches it was sent."""

    def __init__(self):
        self.runs = []

    def run(self, batch):
        self.runs.append(batch)
        return succeed(None)

    def kill(self, items):
        return succeed(None)

    def disconnect(self):
        pass
