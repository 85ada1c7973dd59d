"""The latent space: interpolation (lerp, slerp), concept arithmetic and projection of real images.

Modules: space (points and paths), expr (the expression parser), concepts (class means via the
evaluator), operands (names to latents), project (inversion), figures (PNG and GIF), explore (the
commands behind the CLI).
"""

from .space import Latent, lerp, slerp  # noqa: F401
