"""``python -m hf_vlm_filter``: the same as the ``hf-vlm-filter`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
