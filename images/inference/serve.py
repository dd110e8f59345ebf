"""Entrypoint of the inference image as a script (``python /opt/eksml/serve.py ARGS``).

Same program as ``python -m eksml_inference.server``; the script form lets the local profile
and the Deployment start it the way every other image's entrypoint is started.
"""

import sys

from eksml_inference.server import main

if __name__ == "__main__":
    sys.exit(main())
