"""Backend URLs: 'local' and 'local:///abs/path' open a SqliteQueue + LocalStore."""

from __future__ import annotations

import pytest

import cheerful as cf
from cheerful.durable.backends import MAX_RECEIVES, Backend, local_backend, open_backend
from cheerful.durable.queues.sqlite import SqliteQueue
from cheerful.durable.stores.local import LocalStore


def test_local_means_dot_cheerful_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_backend("local") as backend:
        assert isinstance(backend.queue, SqliteQueue) and isinstance(backend.store, LocalStore)
        assert backend.url == f"local://{tmp_path.resolve()}/.cheerful"
        assert (tmp_path / ".cheerful" / "queue.sqlite3").is_file()
        assert backend.store.root == tmp_path.resolve() / ".cheerful" / "store"
        assert backend.queue.max_receives == MAX_RECEIVES == 20


def test_an_absolute_path_and_its_url_round_trip(tmp_path):
    backend = open_backend(f"local://{tmp_path}/jobs here")
    assert backend.url == f"local://{tmp_path}/jobs%20here"
    assert (tmp_path / "jobs here" / "queue.sqlite3").is_file()
    again = open_backend(backend.url)
    backend.store.put("a/b", b"1")
    assert again.store.get("a/b") == b"1"
    backend.queue.send([b"m"])
    assert again.queue.counts().visible == 1


@pytest.mark.parametrize("name", ["with space", "100%", "a#b", "q?x"])
def test_odd_directory_names_survive_the_url(tmp_path, name):
    backend = local_backend(tmp_path / name)
    assert open_backend(backend.url).store.root == tmp_path / name / "store"


def test_a_backend_object_passes_through(tmp_path):
    backend = open_backend(f"local://{tmp_path}")
    assert open_backend(backend) is backend


def test_local_backend_can_lower_the_message_limit(tmp_path):
    backend = local_backend(tmp_path, max_message_bytes=1000)
    assert isinstance(backend, Backend)
    assert backend.queue.max_message_bytes == 1000
    assert backend.url == f"local://{tmp_path.resolve()}"


def test_s3_urls_open_an_sqs_and_s3_backend_without_a_request():
    backend = open_backend("s3://bucket/prefix?region=eu-west-1")
    assert backend.url == "s3://bucket/prefix?queue=prefix&region=eu-west-1"
    assert type(backend.queue).__name__ == "SqsQueue"
    assert type(backend.store).__name__ == "S3Store"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "gcs://bucket/x",
        "local://relative/path",
        "local:relative",
        "local:///tmp/x?fsync=1",
        "local:///tmp/x#frag",
        "http://example.com",
        "/tmp/some/dir",
    ],
)
def test_bad_urls_list_the_accepted_forms(url):
    with pytest.raises(cf.ConfigError, match="local"):
        open_backend(url)


@pytest.mark.parametrize("url", [None, 42, b"local"])
def test_a_url_must_be_a_string(url):
    with pytest.raises(cf.ConfigError, match="URL"):
        open_backend(url)
