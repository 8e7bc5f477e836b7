"""The loss landscape of a trained run: Hessian spectra, slices, linear mode connectivity, the local
learning coefficient. Every measurement evaluates one ``Objective``: the training loss as a function
of a flat parameter vector on a fixed batch, computed without touching the run's own weights."""
