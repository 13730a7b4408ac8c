"""Finding, downloading and verifying dataset files."""

import hashlib
import os
import tempfile

import keras

from wtl_tf.errors import DataError


def md5sum(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path, expected_md5):
    actual = md5sum(path)
    if actual != expected_md5:
        raise DataError(f"{path} has md5 {actual}, expected {expected_md5}: the file is corrupt "
                        "or a different version; delete it and run again to download a fresh "
                        "copy (or put the right file there)")


def download(url, path, expected_md5):
    """Downloads `url` to `path` with Keras' `get_file` (its md5 check and progress bar),
    atomically: into a temporary directory beside `path`, moved there only when complete
    and verified, so a partial or corrupt download never takes its place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as scratch:
        try:
            fetched = keras.utils.get_file(os.path.basename(path), url, cache_dir=scratch,
                                           cache_subdir="", file_hash=expected_md5,
                                           hash_algorithm="md5")
        except ValueError:  # get_file's hash check
            raise DataError(f"{url} downloaded with another md5 than {expected_md5}: a "
                            "different version or a damaged transfer; run again, or put the "
                            f"right file into {directory}") from None
        except Exception as e:  # noqa: BLE001 - get_file wraps URL errors in Exception
            raise DataError(f"could not download {url} to {path} ({e}); check the network, "
                            f"or download it by hand into {directory}") from None
        os.replace(fetched, path)


def present_or_fetch(data_dir, filename, url, expected_md5, allow_download=True):
    """`filename` in `data_dir` as it is (its loader checks its format, so a user's own copy
    or a small test file in the published format is accepted), else downloaded and verified."""
    path = os.path.join(data_dir, filename)
    if os.path.exists(path):
        return path
    return fetch(data_dir, filename, url, expected_md5, allow_download)


def fetch(data_dir, filename, url, expected_md5, allow_download=True):
    """The verified path of `filename` in `data_dir`, downloading it if it is missing."""
    path = os.path.join(data_dir, filename)
    if os.path.exists(path):
        verify(path, expected_md5)
        return path
    if not allow_download:
        raise DataError(f"{path} does not exist; download it from {url} into {data_dir} or "
                        "allow downloading")
    download(url, path, expected_md5)
    return path
