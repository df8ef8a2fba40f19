"""What the rendering commands keep off the console: the libraries' notices and loading bars.

One function, so that `reneg-video` and `reneg-validate` filter the same things: diffusers' warnings and
deprecation notices (e.g. "TextToVideoSDPipeline has been deprecated"), and the loading bars of diffusers
and transformers ("Loading pipeline components", "Loading weights"). Errors still show. The bars of the
commands themselves (denoising, videos done) are theirs to show or not (`--quiet`).
"""

from __future__ import annotations


def quiet_libraries() -> None:
    """Hide diffusers' notices below errors and the loading bars of diffusers and transformers."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()  # e.g. TextToVideoSDPipeline's deprecation notice
    diffusers_logging.disable_progress_bar()  # loading bars
    transformers_logging.disable_progress_bar()
