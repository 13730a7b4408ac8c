import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from wtl_tf.allocator import pad_heap_top  # noqa: E402

pad_heap_top()  # as the console commands do, before TensorFlow loads

import gc  # noqa: E402
import importlib  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

import background  # noqa: E402  (tests/background.py)


@pytest.fixture(autouse=True)
def _seeded():
    import keras

    keras.utils.set_random_seed(1234)
    yield


_LIGHT_TESTS_SINCE_COLLECTION = [0]


@pytest.fixture(autouse=True)
def _collect_garbage():
    """A full garbage collection after every test that ran a second or more (and after
    every 20 quicker ones). Why: a test leaves cycles of dead TensorFlow objects (traced
    functions, models, variables), and collecting them is costly in a way that grows with
    how many pile up: left to Python's own schedule, one collection late in the suite can
    take over a minute (gc.callbacks shows tens of thousands of objects freed at once), while
    collecting after each test costs far less in all. A collection also walks every live
    object, even when it frees nothing, so the quick tests, which leave little, share one.
    The objects of the imports are frozen (gc.freeze at collection) and never walked."""
    start = time.perf_counter()
    yield
    _LIGHT_TESTS_SINCE_COLLECTION[0] += 1
    if time.perf_counter() - start >= 1.0 or _LIGHT_TESTS_SINCE_COLLECTION[0] >= 20:
        gc.collect()
        _LIGHT_TESTS_SINCE_COLLECTION[0] = 0

SMALL_ARCHIVES = ("images_background_small1", "images_background_small2")


_FOUND = {}
NO_DATA = ("the Omniglot archives were not found or fetched: set WTL_OMNIGLOT_DIR to the "
           "directory holding images_background_small1.zip and images_background_small2.zip")


def find_omniglot_dir():
    """The real Omniglot archives: $WTL_OMNIGLOT_DIR, else ../shared/data/omniglot, else the
    loader's checksummed download (a user's fresh clone has the network, not ../shared);
    None when none of these works (the tests that need them are then skipped, unless
    WTL_REQUIRE_OMNIGLOT=1, as in CI, makes them fail)."""
    if "dir" in _FOUND:
        return _FOUND["dir"]
    from wtl_tf.data import omniglot

    env = os.environ.get("WTL_OMNIGLOT_DIR")
    shared = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "omniglot"))
    if env:  # the user's choice: used if it holds the archives, never replaced by another
        found = env if all(os.path.isfile(os.path.join(env, f"{n}.zip"))
                           for n in SMALL_ARCHIVES) else None
        _FOUND["dir"] = found
        return found
    found = shared if os.path.isdir(shared) else download_quietly(omniglot.DEFAULT_DIR)
    _FOUND["dir"] = found
    return found


def download_quietly(directory):
    """`directory` once the loader's checksummed download has put the archives there, else
    None; Keras' "Downloading data from ..." and progress bar are kept off the test output
    (offline, the one line naming WTL_OMNIGLOT_DIR is what a user should read)."""
    import contextlib
    import io

    from wtl_tf.data import omniglot
    from wtl_tf.errors import WtlError

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            omniglot.archive_paths(directory, SMALL_ARCHIVES, allow_download=True)
    except WtlError:
        return None
    return directory


def pytest_report_header(config):
    found = find_omniglot_dir()
    return f"Omniglot archives: {found}" if found else f"{NO_DATA}; skipping the tests that " \
        "need them"


@pytest.fixture(scope="session")
def omniglot_dir():
    found = find_omniglot_dir()
    if found is None:
        if os.environ.get("WTL_REQUIRE_OMNIGLOT") == "1":
            pytest.fail(NO_DATA + " (WTL_REQUIRE_OMNIGLOT=1)", pytrace=False)
        pytest.skip(NO_DATA)
    return found


# Test modules with subprocess work the suite need not wait for: each has
# start_in_background(omniglot_dir) and stop_background(), and its fixtures wait for the work.
BACKGROUND_MODULES = ("test_flagfiles", "test_export_and_logging")


def pytest_collection_modifyitems(session, config, items):
    """The flagfile records (tests/test_flagfiles.py) are checked last: their runs take most
    of the suite's CPU time, in two worker processes that start with the suite."""
    gc.collect()
    gc.freeze()  # the imported modules' objects: never garbage, not walked again
    flagfile_items = [item for item in items if item.path.name == "test_flagfiles.py"]
    items[:] = [item for item in items if item not in flagfile_items] + flagfile_items


def pytest_collection_finish(session):
    """Starts the background work of the selected tests as soon as the selection is known, at
    lower priority, so that it uses what the other tests leave of the cores: the flagfile
    workers, the TensorBoard/export tests' training run, and the tests that only drive
    subprocesses (tests/background.py)."""
    if session.config.option.collectonly:
        return
    if find_omniglot_dir() is None:
        return  # the background work needs the archives; its tests skip
    selected = {item.path.stem for item in session.items}
    for name in BACKGROUND_MODULES:
        if name in selected:
            importlib.import_module(name).start_in_background(find_omniglot_dir())
    background.start({(item.path.stem, item.name) for item in session.items},
                     find_omniglot_dir())


def pytest_unconfigure(config):
    background.stop()
    for name in BACKGROUND_MODULES:
        if name in sys.modules:
            sys.modules[name].stop_background()


@pytest.fixture(scope="session")
def omniglot_small(omniglot_dir):
    """ClassImages of the two small archives, decoded once per test session."""
    from wtl_tf.data import omniglot

    return omniglot.load(omniglot_dir, SMALL_ARCHIVES, image_size=28, allow_download=False)
