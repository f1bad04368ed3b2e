"""Experiments built on the core and the SynthFaces instruments: the train-or-load model zoo, the benchmark and
its reports, the sample cache, the Asyrp editing table and the source model's training. Nothing below this
package imports it; the command line (``sdft_lite.cli``) sits above it."""
