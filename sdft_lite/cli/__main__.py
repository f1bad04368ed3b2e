"""``python -m sdft_lite.cli`` (and ``torchrun -m sdft_lite.cli``): the same as the ``sdft-lite`` command."""
import sys

from . import main

sys.exit(main())
