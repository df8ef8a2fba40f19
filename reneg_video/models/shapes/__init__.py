"""The shapes world: a miniature world of models this project trains itself (issue 12).

Procedural data (`data`), a programmatic judge (`judge`), the word-level tokenizer (`tokenizer`) and the
constants and model configs (`world`). The trained weights ship in `weights/`: `t2i`
(StableDiffusionPipeline), `t2v` (TextToVideoSDPipeline), `reward` (the `shapes-reward` CLIPModel) and
the shapes ReNeg embedding. `reneg_video.commands.build_shapes` reproduces them from seeds.
"""

from .world import bundled_folder, weights_root

__all__ = ["bundled_folder", "weights_root"]
