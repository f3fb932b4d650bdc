"""ECR repository creation and login through boto3, against moto's server over HTTP."""

from __future__ import annotations

import boto3
import pytest

from deployer.errors import RegistryAuthError, UsageError
from deployer.registries.ecr import Ecr, ecr_host, parse_ecr_host, validate_repository


def test_repository_is_created_once_and_reused(aws):
    ecr = Ecr(region="us-east-1")
    assert ecr.repository_uri("deployer/iris") is None
    uri, created = ecr.ensure_repository("deployer/iris", tags={"deployer:version": "x"})
    assert created and uri == f"{ecr_host('123456789012', 'us-east-1')}/deployer/iris"
    again, created_again = ecr.ensure_repository("deployer/iris")
    assert again == uri and not created_again
    repos = boto3.client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos] == ["deployer/iris"]


def test_login_returns_docker_credentials_for_the_account_registry(aws):
    login = Ecr(region="us-east-1").login()
    assert login.username == "AWS" and login.password and login.source == "ecr"
    assert parse_ecr_host(login.registry) == ("123456789012", "us-east-1")
    assert login.password not in repr(login)


def test_bad_repository_names():
    for bad in ("Upper/Case", "a", "trailing/", "-x"):
        with pytest.raises(UsageError):
            validate_repository(bad)
    assert validate_repository("team.ml/iris-model_v2") == "team.ml/iris-model_v2"


def test_missing_credentials_are_an_auth_error(aws, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(RegistryAuthError) as err:
        Ecr(region="us-east-1").login()
    assert "no AWS credentials" in err.value.what
