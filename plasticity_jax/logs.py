"""Console logging of the command-line tools (`main`, `spectra`, `plot`): quiet unless asked.

Orbax logs every checkpoint step and absl every compilation at INFO; a run's console shows only its progress bar,
warnings (a seed's non-finite losses) and where its results are. `--verbosity=0` (absl's flag) brings INFO back,
including the live metrics of every task (`live_metrics`).
"""

from absl import flags, logging


def quiet_unless_verbosity_given() -> None:
    """Log at WARNING and above, unless the command line set absl's `--verbosity`; call after flags are parsed."""
    if not flags.FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)
