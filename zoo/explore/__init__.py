"""The explorer: one local web app for the zoo's trained runs.

``python -m launch.explore --workdir runs/stylegan --workdir runs/sketch_rnn`` (or
``--runs runs/``) loads each run through the zoo's one restore, compiles its generation
functions once and serves pages to play with them: generators (seeds, truncation,
attribute sliders, interpolation, captions, style mixing, feature maps with local edits,
the mouth animation), pix2pix's draw-and-translate and Sketch-RNN's draw-and-complete.

:mod:`zoo.explore.backends` holds what each page computes (usable without a server);
:mod:`zoo.explore.server` the FastAPI app.
"""
