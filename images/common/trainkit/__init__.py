"""Training-side helpers shared by every training image.

Copied into each image next to its entrypoint (build context ``images/``), and put on
``PYTHONPATH`` by the local profile, so the TensorFlow and MXNet entrypoints read data,
parse arguments and write models the same way.
"""

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
