"""Models: loading pipelines (real, single-file, stand-in, or bundled in a plugin's package), one seeded call,
VideoCrafter2. Imports only from `core`."""
