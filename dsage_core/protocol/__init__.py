"""The only package (with the ``remote`` adapters) that knows Foolscap: interfaces, envelopes, tubs."""
