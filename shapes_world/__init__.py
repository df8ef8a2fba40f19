"""The shapes world: a miniature world of models this project trains itself (issue 12), shipped beside
`reneg_video` and plugged into it as any third party would (`plugin.register`, the entry point
`reneg_video.plugins` / `shapes`), through reneg_video's public API only.

- `world`: sizes, vocabulary, model configs, where the shipped weights live;
- `data`: procedural captioned frames and clips; `judge`: the programmatic judge; `tokenizer`: the
  word-level CLIPTokenizer;
- `reward`: `shapes-reward`, the learned reward; `eval`: arms judged and scored side by side;
- `build`: the stages that train every model from seeds; `commands`: `reneg-build-shapes` and
  `python -m shapes_world.commands.eval`;
- `specs/`: the adapter specs of `shapes-t2i` and `shapes-t2v`; `weights/`: the trained models (`t2i`
  StableDiffusionPipeline and `t2v` TextToVideoSDPipeline, their shared text encoder, tokenizer and VAE
  once in `common`, `reward` the shapes-reward CLIPModel) and the shapes ReNeg embedding; `prompts/`: the
  train / held-out split.
"""

from .world import bundled_folder, weights_root

__all__ = ["bundled_folder", "weights_root"]
