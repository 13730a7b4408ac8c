"""Finding, downloading and verifying dataset files."""

import hashlib
import os
import shutil
import tempfile
import urllib.request

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
    """Downloads `url` to `path` atomically (a partial download never takes its place)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        verify(tmp, expected_md5)
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"could not download {url} to {path} ({e}); check the network, or "
                        f"download it by hand into {os.path.dirname(path)}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
