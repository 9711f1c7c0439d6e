"""The single place the version lives; setup.cfg and the User-Agent read it."""

__version__ = "0.1.0"
