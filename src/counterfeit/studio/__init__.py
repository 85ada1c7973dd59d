"""Counterfeit Studio: a local web app over the library (runs, generate, latent explorer, 2D playground)."""
