"""The S3 output store against a real S3 API (moto in server mode)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from apps.common.redis import keys
from apps.common.service.settings import CommonSettings
from apps.common.storage import make_output_store
from apps.common.storage.local import LocalOutputStore
from apps.common.storage.names import fixed_key, name_of, preview_index
from apps.common.storage.s3 import S3OutputStore, parse_s3_url
from tests.s3server import S3_ENV, S3Server, s3_server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    with s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def store(s3: S3Server, bucket: str, *, mode: str = "presigned") -> S3OutputStore:
    return S3OutputStore(
        f"s3://{bucket}/out/puts",
        name_key=fixed_key("x" * 32),
        public_base="http://gateway.example",
        ttl_s=86400,
        endpoint_url=s3.url,
        region="us-east-1",
        url_mode=mode,
    )


def test_outputs_get_unguessable_presigned_urls(s3: S3Server) -> None:
    outputs = store(s3, s3.bucket("presigned"))
    url = outputs.put("task-1", 0, b"\x89PNG fake", extension="png")
    assert urlsplit(url).path.startswith("/presigned/out/puts/task-1/")
    assert "X-Amz-Signature" in url
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == b"\x89PNG fake"
    assert fetched.headers["content-type"] == "image/png"
    assert outputs.read_output(url) == b"\x89PNG fake"
    # The same task and index make the same key: a rerun overwrites instead of duplicating.
    assert urlsplit(outputs.put("task-1", 0, b"again", extension="png")).path == urlsplit(url).path
    unsigned = url.split("?", 1)[0]
    assert httpx.get(unsigned).status_code == 403, "objects are private without the signature"


def test_inputs_are_store_references_and_never_public(s3: S3Server) -> None:
    outputs = store(s3, s3.bucket("inputs"), mode="proxy")
    ref = outputs.put_input("task-2", "image", b"input bytes", extension="jpg")
    assert ref.startswith("store://inputs/task-2/")
    assert outputs.read(ref) == b"input bytes"
    with pytest.raises(ValueError, match="bad store reference"):
        outputs.read("store://inputs/../secrets")
    with pytest.raises(FileNotFoundError):
        outputs.read("store://inputs/task-2/nothing.jpg")
    url = outputs.put("task-2", 0, b"out", extension="png")
    assert url.startswith("http://gateway.example/files/task-2/")
    assert outputs.read_output(url) == b"out"
    with pytest.raises(FileNotFoundError):
        outputs.read_output("http://gateway.example/files/" + ref.removeprefix("store://"))


def test_sweep_and_lifecycle_follow_the_job_ttl(s3: S3Server) -> None:
    bucket = s3.bucket("sweep")
    outputs = store(s3, bucket)
    outputs.put("task-3", 0, b"a", extension="png")
    outputs.put_input("task-3", "image", b"b", extension="png")
    assert outputs.sweep(3600) == 0, "fresh objects stay"
    assert outputs.sweep(-60) == 2, "objects older than the cutoff go, inputs too"
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    operator_rule = {
        "ID": "operator-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
    }
    s3.client().put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [operator_rule]}
    )
    outputs.set_lifecycle()
    outputs.set_lifecycle()  # every gateway start: still one rule of ours
    rules = {
        r["ID"]: r for r in s3.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    }
    assert set(rules) == {"operator-logs", "fluxgate-expire-out-puts"}, "the operator's rule stays"
    ours = rules["fluxgate-expire-out-puts"]
    assert ours["Expiration"]["Days"] == 1 and ours["Filter"]["Prefix"] == "out/puts/"


def test_a_preview_is_an_object_under_its_task_swept_with_the_outputs(s3: S3Server) -> None:
    bucket = s3.bucket("previews")
    outputs = store(s3, bucket)
    output = outputs.put("task-5", 0, b"image", extension="webp")
    preview = outputs.put("task-5", preview_index(0), b"preview", extension="webp")
    assert urlsplit(preview).path.startswith(f"/{bucket}/out/puts/task-5/")
    assert urlsplit(preview).path != urlsplit(output).path, "never an output's name"
    fetched = httpx.get(preview)
    assert fetched.content == b"preview" and fetched.headers["content-type"] == "image/webp"
    assert outputs.read_output(output) == b"image"
    assert outputs.sweep(-60) == 2
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_refused_jobs_inputs_can_be_deleted(s3: S3Server) -> None:
    bucket = s3.bucket("refused")
    outputs = store(s3, bucket)
    ref = outputs.put_input("task-4", "image", b"x", extension="png")
    outputs.put_input("task-5", "image", b"y", extension="png")
    outputs.delete_inputs("task-4")
    with pytest.raises(FileNotFoundError):
        outputs.read(ref)
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [k for k in keys if "task-5" in k] and len(keys) == 1


def test_the_setting_picks_the_store(tmp_path: Path) -> None:
    local = make_output_store(CommonSettings(output_dir=str(tmp_path)))
    assert isinstance(local, LocalOutputStore)
    remote = make_output_store(
        CommonSettings(output_dir="s3://bucket/p", s3_endpoint_url="http://127.0.0.1:1")
    )
    assert isinstance(remote, S3OutputStore) and remote.bucket == "bucket"
    for bad in ("s3:///nobucket", "s3://bucket", "s3://bucket/", "gs://bucket/p"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            parse_s3_url(bad)


def test_local_sweep_removes_only_expired_files(tmp_path: Path) -> None:
    outputs = LocalOutputStore(tmp_path, public_base="http://g", name_key=fixed_key("s" * 32))
    old = outputs.put("old-task", 0, b"x", extension="png")
    outputs.put("new-task", 0, b"y", extension="png")
    old_path = tmp_path / old.removeprefix("http://g/files/")
    os.utime(old_path, (0, 0))
    assert outputs.sweep(3600) == 1
    assert not old_path.exists() and not old_path.parent.exists()
    assert (tmp_path / "new-task").is_dir()

    with pytest.raises(FileNotFoundError):
        outputs.read_output("http://g/files//etc/hostname")
    with pytest.raises(FileNotFoundError):
        outputs.read_output("http://g/files/new-task/../../secret")


def test_output_names_use_a_key_only_the_server_has(redis_url: str, tmp_path: Path) -> None:
    """With the dev internal secret, names are still unguessable: their key is generated once,
    kept in Redis, and shared by every process; an explicit secret wins."""
    own_db = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(own_db).delete(keys.OUTPUT_NAME_KEY)
    settings = CommonSettings(output_dir=str(tmp_path), redis_url=own_db)
    first = make_output_store(settings).put("task-1", 0, b"x", extension="png")
    again = make_output_store(settings).put("task-1", 0, b"x", extension="png")
    assert first == again, "every process names a rerun's outputs the same"
    guessed = name_of(settings.internal_secret.encode(), "task-1", 0)
    assert guessed not in first, "not computable from the dev default"
    assert len(redis.Redis.from_url(own_db).get(keys.OUTPUT_NAME_KEY) or b"") >= 32
    explicit = CommonSettings(
        output_dir=str(tmp_path), redis_url=own_db, output_name_secret="k" * 32
    )
    named = make_output_store(explicit).put("task-1", 0, b"x", extension="png")
    assert name_of(b"k" * 32, "task-1", 0) in named
