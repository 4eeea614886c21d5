#!/usr/bin/env node
// Test helper: run magenta's @magenta/sketch client (the published sketch-rnn-js
// runtime) on a model JSON file and report the mixture / pen parameters it
// computes, so tests/test_sketch_rnn_magenta.py can compare them with zoo's.
//
// usage: node run_sketch.js MODEL_JSON STROKES_JSON OUT_JSON [TEMPERATURES]
//
//   MODEL_JSON    [info, shapes, weights] as written by export_magenta_json.
//   STROKES_JSON  a list of stroke-5 rows [dx, dy, p1, p2, p3] in the client's
//                 pixel units (model units * info.scale_factor / 2).
//   OUT_JSON      where the result is written (stdout is left to the client's
//                 own log messages).
//   TEMPERATURES  comma-separated getPDF temperatures (default "1").
//
// The client is fed zeroInput() first and then every stroke but the last one,
// one update() at a time; getPDF is read after each update.  So pdf step t is
// the distribution of stroke t given strokes < t, i.e. zoo's decoder output t
// for the input sequence [start token, strokes[:-1]].  updateStrokes() is also
// run over the same inputs in one call, and its final state is reported.
'use strict';

const fs = require('fs');
const sketch = require('@magenta/sketch');

function toList(a) {
  return Array.from(a, Number);
}

function pdfToObject(pdf, nmix) {
  // StrokePDF.sigmaY of @magenta/sketch 0.2.0 is sliced [4N, 15N) and so also
  // holds corr and pen; only its first N entries are sigma_y.
  return {
    pi: toList(pdf.pi),
    muX: toList(pdf.muX),
    muY: toList(pdf.muY),
    sigmaX: toList(pdf.sigmaX),
    sigmaY: toList(pdf.sigmaY.slice(0, nmix)),
    corr: toList(pdf.corr),
    pen: toList(pdf.pen),
  };
}

function main(argv) {
  if (argv.length < 3) {
    throw new Error('usage: node run_sketch.js MODEL_JSON STROKES_JSON OUT_JSON [TEMPERATURES]');
  }
  const [modelPath, strokesPath, outPath] = argv;
  const temps = (argv[3] || '1').split(',').map(Number);
  const data = JSON.parse(fs.readFileSync(modelPath, 'utf8'));
  const strokes = JSON.parse(fs.readFileSync(strokesPath, 'utf8'));

  // What SketchRNN.initialize() does after fetching the checkpoint URL.
  const model = new sketch.SketchRNN('unused://');
  model.instantiateFromJSON(data[0], data[1], data[2]);

  const inputs = [model.zeroInput()].concat(strokes.slice(0, strokes.length - 1));
  const steps = [];
  let state = model.zeroState();
  for (const x of inputs) {
    state = model.update(x, state);
    const step = {};
    for (const t of temps) {
      step[String(t)] = pdfToObject(model.getPDF(state, t), model.NMIXTURE);
    }
    steps.push(step);
  }
  const batched = model.updateStrokes(inputs, model.zeroState());

  const out = {
    package_version: require('@magenta/sketch/package.json').version,
    tfjs_core_version: require('@tensorflow/tfjs-core/package.json').version,
    backend: sketch.tf.getBackend(),
    num_units: model.numUnits,
    nmixture: model.NMIXTURE,
    scale_factor: model.scaleFactor,
    zero_input: model.zeroInput(),
    temperatures: temps.map(String),
    steps: steps,
    final_state: {c: toList(state.c), h: toList(state.h)},
    update_strokes_state: {c: toList(batched.c), h: toList(batched.h)},
  };
  fs.writeFileSync(outPath, JSON.stringify(out));
}

main(process.argv.slice(2));
