"""Models: loading pipelines (real, single-file, stand-in, bundled), one seeded call, VideoCrafter2, the shapes
world. Imports only from `core`."""
