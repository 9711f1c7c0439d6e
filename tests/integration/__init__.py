"""Real servers and workers against the local stand-in: what arrives, and how shutdown ends."""
