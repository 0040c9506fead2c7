"""Plain data shared by every layer: job states, job records. No Twisted, no Foolscap."""
