"""Pure parts of the SageMaker target: names, option parsing, config hash, model archive."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from deployer.errors import UnsafePathError, UsageError
from deployer.model.files import model_digest
from deployer.targets.sagemaker.artifact import archive_bytes
from deployer.targets.sagemaker.names import resource_name, unique_suffix, validate_name
from deployer.targets.sagemaker.spec import config_hash, is_ecr_image, parse_batch, parse_deploy


@pytest.mark.parametrize("name", ["a", "iris-v2", "A1-b2-C3", "a" * 63, "a--b"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(("name", "problem"), [
    ("", "empty"), ("a" * 64, "64 characters"), ("my_model", "'_'"), ("-x", "start and end"),
    ("x-", "start and end"), ("a.b", "'.'"), ("a" * 40 + "-" * 30 + "b", "71 characters"),
])
def test_invalid_names_say_why_and_suggest(name, problem):
    with pytest.raises(UsageError) as err:
        validate_name(name)
    assert problem in err.value.what
    assert "use e.g." in (err.value.fix or "")


def test_generated_names_fit_and_are_unique():
    digest = "ab" * 32
    names = {resource_name("x" * 63, "config", unique_suffix(digest)) for _ in range(50)}
    assert len(names) == 50
    assert all(len(n) <= 63 and n.startswith("xxx") and "-config-abababab-" in n for n in names)
    assert resource_name("my_app.v2", "model", "s") == "my-app-v2-model-s"


def test_parse_deploy_defaults_and_values(tmp_path):
    spec = parse_deploy({})
    assert (spec.mode, spec.instance_type, spec.instance_count, spec.variant_weight) == ("create", "ml.m5.large", 1, 1.0)
    vpc = tmp_path / "vpc.json"
    vpc.write_text(json.dumps({"SecurityGroupIds": ["sg-1"], "Subnets": ["s-1"]}))
    spec = parse_deploy({"serverless": "memory=3072, concurrency=7",
                         "env": ("A=1", "B=x=y"), "tags": ("team=ml",), "vpc_config": str(vpc),
                         "bucket": "s3://my-bucket/"})
    assert spec.serverless is not None and (spec.serverless.memory_mb, spec.serverless.max_concurrency) == (3072, 7)
    assert parse_deploy({"data_capture": "s3://bkt/p"}).data_capture.percent == 100
    assert spec.env == (("A", "1"), ("B", "x=y"))
    assert spec.bucket == "my-bucket"
    assert spec.vpc_config == {"SecurityGroupIds": ["sg-1"], "Subnets": ["s-1"]}


@pytest.mark.parametrize(("options", "where"), [
    ({"mode": "upsert"}, "--mode"),
    ({"instance_type": "m5.large"}, "--instance-type"),
    ({"instance_count": 0}, "--instance-count"),
    ({"serverless": "memory=2048"}, "--serverless"),
    ({"serverless": "memory=2048,concurrency=500"}, "--serverless"),
    ({"data_capture": "s3://bkt/p,150"}, "--data-capture"),
    ({"data_capture": "http://bkt/p"}, "--data-capture"),
    ({"async_output": "b/p"}, "--async-output"),
    ({"env": ("NOEQUALS",)}, "--env"),
    ({"tags": ("aws:x=1",)}, "--tags"),
    ({"tags": ("k=" + "v" * 300,)}, "--tags"),
    ({"execution_role_arn": "my-role"}, "--execution-role-arn"),
    ({"bucket": "b/key"}, "--bucket"),
    ({"variant_weight": -1}, "--variant-weight"),
])
def test_parse_deploy_rejects_bad_values_naming_the_option(options, where):
    with pytest.raises(UsageError) as err:
        parse_deploy(options)
    assert err.value.where == where


@pytest.mark.parametrize("content", ["not json", "[]", '{"Subnets": ["s"]}', '{"SecurityGroupIds": [], "Subnets": ["s"]}'])
def test_bad_vpc_config_files(tmp_path, content):
    path = tmp_path / "vpc.json"
    path.write_text(content)
    with pytest.raises(UsageError) as err:
        parse_deploy({"vpc_config": str(path)})
    assert err.value.where == str(path)


def test_parse_batch():
    spec = parse_batch("s3://bkt/in/", "s3://bkt/out/", {"split_type": "Line", "content_type": "text/csv"})
    assert (spec.split_type, spec.content_type) == ("Line", "text/csv")
    with pytest.raises(UsageError):
        parse_batch("s3://bkt/in/", "s3://bkt/out/", {"split_type": "Lines"})


def test_ecr_detection():
    assert is_ecr_image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/repo:1")
    assert is_ecr_image("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/a/b@sha256:00")
    assert not is_ecr_image("ghcr.io/x/y:1")
    assert not is_ecr_image("repo:1")
    assert not is_ecr_image("public.ecr.aws/x/y:1")


def test_config_hash_counts_only_what_changes_serving():
    base = parse_deploy({"bucket": "aaa"})
    h = config_hash(base, image="img:1", model_digest="d", role="r")
    assert h == config_hash(parse_deploy({"bucket": "bbb", "mode": "replace", "archive": True}),
                            image="img:1", model_digest="d", role="r")
    for changed in ({"instance_type": "ml.c5.large"}, {"env": ("A=1",)}, {"instance_count": 2}):
        assert config_hash(parse_deploy(changed), image="img:1", model_digest="d", role="r") != h
    assert config_hash(base, image="img:2", model_digest="d", role="r") != h
    assert config_hash(base, image="img:1", model_digest="e", role="r") != h


def test_model_archive_is_reproducible_and_rooted(tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "sub" / "w.bin").write_bytes(b"\x00" * 10)
    first = archive_bytes(model)
    os.utime(model / "MLmodel", (1, 1))
    assert archive_bytes(model) == first  # timestamps do not matter
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["MLmodel", "sub/w.bin"]
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    digest = model_digest(model)
    (model / "sub" / "w.bin").write_bytes(b"\x01" * 10)
    assert model_digest(model) != digest


def test_model_archive_refuses_symlinks_out_of_the_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (tmp_path / "secret").write_text("x")
    (model / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError):
        model_digest(model)
    (model / "link").unlink()
    (model / "inner").write_text("y")
    (model / "link").symlink_to(model / "inner")
    assert model_digest(model)
