"""counterfeit: teach a machine to forge images."""

__version__ = "0.1.0"
