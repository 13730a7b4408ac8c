import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    import keras

    keras.utils.set_random_seed(1234)
    yield

SMALL_ARCHIVES = ("images_background_small1", "images_background_small2")


@pytest.fixture(scope="session")
def omniglot_dir():
    """The real Omniglot archives: $WTL_OMNIGLOT_DIR, else ../shared/data/omniglot, else the
    loader's checksummed download (a user's fresh clone has the network, not ../shared)."""
    from datasets import omniglot

    env = os.environ.get("WTL_OMNIGLOT_DIR")
    if env:
        return env
    shared = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "omniglot"))
    if os.path.isdir(shared):
        return shared
    omniglot.archive_paths(omniglot.DEFAULT_DIR, SMALL_ARCHIVES, allow_download=True)
    return omniglot.DEFAULT_DIR


@pytest.fixture(scope="session")
def omniglot_small(omniglot_dir):
    """ClassImages of the two small archives, decoded once per test session."""
    from datasets import omniglot

    return omniglot.load(omniglot_dir, SMALL_ARCHIVES, image_size=28, allow_download=False)
