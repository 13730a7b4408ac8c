"""Dataset downloads go through Keras' get_file (md5-checked) and land atomically: a file
with the wrong checksum, or a failed transfer, leaves nothing at the target path."""

import hashlib
import os

import pytest

from wtl_tf.data import archives
from wtl_tf.errors import DataError


@pytest.fixture
def published(tmp_path):
    source = tmp_path / "server" / "archive.zip"
    source.parent.mkdir()
    source.write_bytes(b"the published bytes" * 1000)
    return source, hashlib.md5(source.read_bytes()).hexdigest()


def test_a_verified_download_lands_at_its_path_and_is_then_used_as_it_is(tmp_path, published):
    source, md5 = published
    target_dir = tmp_path / "data"
    path = archives.fetch(str(target_dir), "archive.zip", source.as_uri(), md5)
    assert open(path, "rb").read() == source.read_bytes()
    assert sorted(os.listdir(target_dir)) == ["archive.zip"]  # no scratch left behind
    source.unlink()  # present: not fetched again
    assert archives.fetch(str(target_dir), "archive.zip", "file:///nowhere", md5) == path


@pytest.mark.parametrize("problem", ["checksum", "unreachable"])
def test_a_bad_download_leaves_nothing_and_says_what_to_do(tmp_path, published, problem):
    source, md5 = published
    url = source.as_uri() if problem == "checksum" else (tmp_path / "missing.zip").as_uri()
    target_dir = tmp_path / "data"
    with pytest.raises(DataError) as caught:
        archives.fetch(str(target_dir), "archive.zip", url, "0" * 32 if problem == "checksum"
                       else md5)
    message = str(caught.value)
    assert "\n" not in message and ("another md5" in message if problem == "checksum"
                                    else "could not download" in message)
    assert os.listdir(target_dir) == []


def test_the_test_suite_offline_says_one_thing_not_keras_download_lines(tmp_path, monkeypatch,
                                                                          capfd):
    import conftest
    from wtl_tf.data import omniglot

    monkeypatch.setattr(omniglot, "URL", (tmp_path / "offline" / "{}.zip").as_uri())
    assert conftest.download_quietly(str(tmp_path / "cache")) is None
    out, err = capfd.readouterr()
    assert "Downloading data from" not in out + err
