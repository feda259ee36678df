"""The shared botocore loader that confirms S3 without a listing: clients built on it work, a second client
parses nothing again, and a user's extra model directories (AWS_DATA_PATH) are still honoured."""

from __future__ import annotations

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
