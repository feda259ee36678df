"""The shared botocore loader that confirms S3 without a listing: clients built on it work, a second client
parses nothing again, and a user's extra model directories (AWS_DATA_PATH) are still honoured."""

from __future__ import annotations

import pytest

from packvault.storage.accounting import RequestCounter
from packvault.storage.s3 import client as s3_loader
from packvault.storage.s3.client import make_client
from packvault.storage.s3.config import parse_s3_url


def _client(endpoint: str):
    return make_client(parse_s3_url(f"s3://loader-test?endpoint={endpoint}&path_style=1"), RequestCounter())


def test_the_loader_confirms_s3_without_listing_the_services(fresh_loader, monkeypatch):
    loader = s3_loader.shared_loader()
    listings: list[str] = []
    original = loader.file_loader.exists

    def spying_exists(path):
        listings.append(path)
        return original(path)

    monkeypatch.setattr(loader.file_loader, "exists", spying_exists)
    names = loader.list_available_services("service-2")
    assert "s3" in names
    assert listings == [], "no service directory was looked at for S3"
    assert "sts" in names and "no-such-service" not in names, "other services come from the full listing"
    assert loader is s3_loader.shared_loader()


def test_client_on_the_shared_loader_talks_to_s3(fresh_loader, moto_endpoint):
    client = _client(moto_endpoint)
    assert client._loader is s3_loader.shared_loader()
    client.create_bucket(Bucket="loader-test")
    client.put_object(Bucket="loader-test", Key="k", Body=b"v")
    assert client.get_object(Bucket="loader-test", Key="k")["Body"].read() == b"v"


def test_a_second_client_reads_no_model_file(fresh_loader, monkeypatch):
    _client("http://127.0.0.1:9")  # no request is sent: building a client is local
    loader = s3_loader.shared_loader()
    reads: list[str] = []  # model files found and parsed (a probe for an optional file finds nothing)
    original = loader.file_loader.load_file

    def counting_load_file(path):
        data = original(path)
        if data is not None:
            reads.append(path)
        return data

    monkeypatch.setattr(loader.file_loader, "load_file", counting_load_file)
    _client("http://127.0.0.1:9")
    assert reads == []


def test_aws_data_path_keeps_botocores_own_loader(fresh_loader, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    client = _client("http://127.0.0.1:9")
    assert client._loader is not s3_loader.shared_loader()


def _client_with_cache(endpoint: str, cache_dir, **query: str):
    params = "".join(f"&{k}={v}" for k, v in query.items())
    settings = parse_s3_url(f"s3://loader-test?endpoint={endpoint}{params}")
    return make_client(settings, RequestCounter(), cache_dir)


def _tables_read(monkeypatch) -> list[str]:
    """The endpoint tables the (fresh) shared loader parses from now on."""
    loader = s3_loader.shared_loader()
    reads: list[str] = []
    original = loader.file_loader.load_file

    def counting_load_file(path):
        data = original(path)
        if data is not None and path.endswith("endpoints"):
            reads.append(path)
        return data

    monkeypatch.setattr(loader.file_loader, "load_file", counting_load_file)
    return reads


def test_the_cut_endpoint_table_is_kept_for_the_next_process(fresh_loader, monkeypatch, tmp_path, moto_endpoint):
    reads = _tables_read(monkeypatch)
    _client_with_cache("http://127.0.0.1:9", tmp_path)
    assert len(reads) == 1 and (tmp_path / s3_loader.ENDPOINT_TABLE_CACHE).exists()
    monkeypatch.setattr(s3_loader, "_shared", None)  # as in the next process
    reads = _tables_read(monkeypatch)
    client = _client_with_cache(moto_endpoint, tmp_path, path_style="1")
    assert reads == [], "the table came from the cache"
    client.create_bucket(Bucket="loader-test")
    client.put_object(Bucket="loader-test", Key="k", Body=b"v")
    assert client.get_object(Bucket="loader-test", Key="k")["Body"].read() == b"v"


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"])
def test_the_cut_table_resolves_what_the_whole_one_does(fresh_loader, monkeypatch, tmp_path, region):
    """AWS itself (no endpoint given): S3's endpoint in every partition, and the services that credentials
    come from, are what botocore's whole table gives."""
    import botocore.session

    settings = parse_s3_url(f"s3://loader-test?region={region}")
    whole = make_client(settings, RequestCounter())  # no cache: botocore's whole table
    monkeypatch.setattr(s3_loader, "_shared", None)
    make_client(settings, RequestCounter(), tmp_path)  # writes the cut table
    monkeypatch.setattr(s3_loader, "_shared", None)
    reads = _tables_read(monkeypatch)
    cut = make_client(settings, RequestCounter(), tmp_path)
    assert reads == []
    assert cut.meta.endpoint_url == whole.meta.endpoint_url
    on_cut_table = botocore.session.Session()
    on_cut_table.register_component("data_loader", s3_loader.shared_loader())
    on_whole_table = botocore.session.Session()
    for service in ("s3", "sts", "sso", "sso-oidc"):
        assert _resolved(on_cut_table, service, region) == _resolved(on_whole_table, service, region), service


def _resolved(session, service: str, region: str) -> dict | None:
    return session._get_internal_component("endpoint_resolver").construct_endpoint(service, region)  # noqa: SLF001


def test_a_damaged_or_foreign_cache_is_not_used(fresh_loader, monkeypatch, tmp_path):
    cache = tmp_path / s3_loader.ENDPOINT_TABLE_CACHE
    cache.write_bytes(b"\xc1 not msgpack")
    reads = _tables_read(monkeypatch)
    _client_with_cache("http://127.0.0.1:9", tmp_path)
    assert len(reads) == 1
    import msgpack

    doc = msgpack.unpackb(cache.read_bytes())
    assert set(doc) == {"key", "table"}
    # a table cut from another botocore (another key) is not taken, however it looks
    cache.write_bytes(msgpack.packb({"key": "another botocore", "table": {"partitions": []}}))
    monkeypatch.setattr(s3_loader, "_shared", None)
    reads = _tables_read(monkeypatch)
    client = make_client(parse_s3_url("s3://loader-test?region=eu-central-1"), RequestCounter(), tmp_path)
    assert len(reads) == 1
    assert client.meta.endpoint_url == "https://s3.eu-central-1.amazonaws.com"
