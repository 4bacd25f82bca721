"""The workers' IAM role and instance profile, against a real ``moto_server`` over HTTP
(IAM and STS reach it through boto3's own ``AWS_ENDPOINT_URL``)."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from cheerful.durable.aws import AwsClients
from cheerful.durable.backends import parse_s3_url
from cheerful.durable.fleet import iam
from cheerful.durable.queues.sqs import SqsQueue
from cheerful.errors import BackendError, ConfigError

ACCOUNT = "123456789012"  # moto's
WORKER_SQS = {
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
}


@pytest.fixture
def moto_iam(moto_server, monkeypatch):
    """IAM and STS go to moto; the location of s3://bkt/pre on it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    location = parse_s3_url(f"s3://bkt/pre?region=us-east-1&endpoint_url={moto_server.endpoint}")
    client = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_server.endpoint)
    return location, client


def _job() -> str:
    return f"job-{uuid.uuid4().hex[:10]}"


def _resources(document: dict) -> set[str]:
    found: set[str] = set()
    for statement in document["Statement"]:
        resource = statement["Resource"]
        found |= {resource} if isinstance(resource, str) else set(resource)
    return found


def _actions(document: dict) -> set[str]:
    found: set[str] = set()
    for statement in document["Statement"]:
        action = statement["Action"]
        found |= {action} if isinstance(action, str) else set(action)
    return found


def _statement(document: dict, action: str) -> dict:
    (statement,) = [
        s
        for s in document["Statement"]
        if action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    return statement


# The policy document (no service needed).


def test_a_jobs_policy_names_exactly_its_queues_and_the_prefix():
    location = parse_s3_url("s3://bkt/pre?region=eu-west-1")
    queue, dead = SqsQueue("pre").queue_names("job-7")
    document = iam.policy_document(location, ACCOUNT, "eu-west-1", "job-7")

    assert document["Version"] == "2012-10-17"
    assert {s["Effect"] for s in document["Statement"]} == {"Allow"}
    assert _resources(document) == {
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{queue}",
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{dead}",
        "arn:aws:s3:::bkt/pre/*",
        "arn:aws:s3:::bkt",
    }
    assert queue.startswith("pre--job-7-") and dead == queue + "--dead"
    assert _actions(document) == WORKER_SQS | {
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
    }
    sqs = _statement(document, "sqs:ReceiveMessage")
    assert set(sqs["Action"]) == WORKER_SQS
    assert set(sqs["Resource"]) == {
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{queue}",
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{dead}",
    }
    assert _statement(document, "s3:GetObject")["Resource"] == "arn:aws:s3:::bkt/pre/*"
    listing = _statement(document, "s3:ListBucket")
    assert listing["Resource"] == "arn:aws:s3:::bkt"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["pre", "pre/*"]}}


def test_a_backends_policy_covers_every_job_queue_and_may_list_queues():
    location = parse_s3_url("s3://bkt/deep/pre?region=eu-west-1&queue=work")
    document = iam.policy_document(location, ACCOUNT, "eu-west-1", None)

    sqs = _statement(document, "sqs:ReceiveMessage")
    assert set(sqs["Resource"]) == {
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:work",
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:work--*",
    }
    listing = _statement(document, "sqs:ListQueues")
    assert listing["Action"] == "sqs:ListQueues" and listing["Resource"] == "*"
    assert _statement(document, "s3:PutObject")["Resource"] == "arn:aws:s3:::bkt/deep/pre/*"
    condition = _statement(document, "s3:ListBucket")["Condition"]
    assert condition == {"StringLike": {"s3:prefix": ["deep/pre", "deep/pre/*"]}}
    assert "sqs:ListQueues" not in _actions(iam.policy_document(location, ACCOUNT, "r", "j"))


def test_an_empty_prefix_means_the_whole_bucket_and_partitions_are_kept():
    location = parse_s3_url("s3://bkt?region=cn-north-1")
    document = iam.policy_document(location, ACCOUNT, "cn-north-1", "j", partition="aws-cn")
    assert _statement(document, "s3:GetObject")["Resource"] == "arn:aws-cn:s3:::bkt/*"
    listing = _statement(document, "s3:ListBucket")
    assert listing["Resource"] == "arn:aws-cn:s3:::bkt" and "Condition" not in listing
    assert all(r.startswith("arn:aws-cn:") for r in _resources(document))


def test_role_names_are_valid_iam_names():
    short = parse_s3_url("s3://bkt/pre?region=eu-west-1")
    assert iam.role_name(short) == "cheerful-pre"
    job_role = iam.role_name(short, "job-1")
    assert job_role.startswith("cheerful-pre-") and len(job_role) == len("cheerful-pre-") + 8
    assert iam.role_name(short, "job-2") != job_role
    longest = parse_s3_url(f"s3://bkt/pre?region=eu-west-1&queue={'q' * 40}")
    for name in (iam.role_name(longest), iam.role_name(longest, "j" * 128)):
        assert len(name) <= 64
        assert all(c.isalnum() or c in "_+=,.@-" for c in name)


# Against moto.


def test_ensure_makes_the_role_and_profile_once_and_delete_removes_all(moto_iam):
    location, client = moto_iam
    job = _job()
    name, created = iam.ensure_instance_profile(location, job=job)
    assert name == iam.role_name(location, job)
    assert len(created) == 4 and all(name in line for line in created)
    assert iam.ensure_instance_profile(location, job=job) == (name, [])

    role = client.get_role(RoleName=name)["Role"]
    tags = {t["Key"]: t["Value"] for t in role["Tags"]}
    assert tags == {"cheerful:queue": location.queue, "cheerful:job": job}
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    profile = client.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [name]
    assert client.list_role_policies(RoleName=name)["PolicyNames"] == [iam.POLICY_NAME]

    stored = client.get_role_policy(RoleName=name, PolicyName=iam.POLICY_NAME)["PolicyDocument"]
    stored = json.loads(stored) if isinstance(stored, str) else stored
    queue, dead = SqsQueue(location.queue).queue_names(job)
    assert _resources(stored) == {
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:{queue}",
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:{dead}",
        "arn:aws:s3:::bkt/pre/*",
        "arn:aws:s3:::bkt",
    }
    assert stored == iam.policy_document(location, ACCOUNT, "us-east-1", job)

    deleted = iam.delete_instance_profile(location, job=job)
    assert len(deleted) == 3
    for call, kwargs in (
        (client.get_role, {"RoleName": name}),
        (client.get_instance_profile, {"InstanceProfileName": name}),
    ):
        with pytest.raises(client.exceptions.NoSuchEntityException):
            call(**kwargs)
    assert iam.delete_instance_profile(location, job=job) == []


def test_the_policy_names_the_queues_sqs_really_has(moto_iam):
    """The ARNs in the policy are those of the queues a job's messages go to."""
    location, _ = moto_iam
    job = _job()
    queue = SqsQueue(location.queue, clients=AwsClients("us-east-1", None, location.sqs_endpoint))
    queue.create()
    queue.send([b"x"], group=job)
    document = iam.policy_document(location, ACCOUNT, "us-east-1", job)
    real = set()
    for name in queue.queue_names(job):
        url = queue.client.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = queue.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        real.add(attributes["Attributes"]["QueueArn"])
    assert set(_statement(document, "sqs:ReceiveMessage")["Resource"]) == real
    queue.delete_group(job)


def test_a_rerun_restores_a_changed_policy_and_a_backend_role_is_separate(moto_iam):
    location, client = moto_iam
    job = _job()
    name, _ = iam.ensure_instance_profile(location, job=job)
    client.put_role_policy(
        RoleName=name,
        PolicyName=iam.POLICY_NAME,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    _, again = iam.ensure_instance_profile(location, job=job)
    assert len(again) == 1 and again[0].startswith(f"updated policy {iam.POLICY_NAME}")
    stored = client.get_role_policy(RoleName=name, PolicyName=iam.POLICY_NAME)["PolicyDocument"]
    assert stored == iam.policy_document(location, ACCOUNT, "us-east-1", job)

    # The backend's role (every job) is another role; a prefix of its own keeps it apart
    # from any other test's.
    unique = uuid.uuid4().hex[:8]
    other = parse_s3_url(
        f"s3://bkt/pre{unique}?region=us-east-1&endpoint_url={location.s3_endpoint}"
    )
    backend, _ = iam.ensure_instance_profile(other)
    assert backend == f"cheerful-pre{unique}" == iam.role_name(other)
    stored = client.get_role_policy(RoleName=backend, PolicyName=iam.POLICY_NAME)
    assert "sqs:ListQueues" in _actions(stored["PolicyDocument"])
    assert iam.delete_instance_profile(other) and iam.delete_instance_profile(location, job=job)


def test_a_role_cheerful_did_not_make_is_left_alone(moto_iam):
    location, client = moto_iam
    name = f"someone-else-{uuid.uuid4().hex[:8]}"
    client.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(iam.trust_policy()))
    with pytest.raises(ConfigError, match="not made by cheerful"):
        iam.ensure_instance_profile(location, job=_job(), name=name)
    with pytest.raises(ConfigError, match="leaves it alone"):
        iam.delete_instance_profile(location, name=name)
    assert client.list_role_policies(RoleName=name)["PolicyNames"] == []
    client.get_role(RoleName=name)  # still there
    client.delete_role(RoleName=name)


def test_a_role_of_another_job_is_left_alone(moto_iam):
    location, client = moto_iam
    job = _job()
    name, _ = iam.ensure_instance_profile(location, job=job)
    with pytest.raises(ConfigError, match=f"job {job!r}"):
        iam.ensure_instance_profile(location, job=_job(), name=name)
    assert iam.delete_instance_profile(location, job=job)


def test_access_denied_on_iam_says_what_to_do():
    from botocore.exceptions import ClientError

    denied = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "not authorized to iam:CreateRole"}},
        "CreateRole",
    )
    with pytest.raises(BackendError) as caught, iam._iam_errors("create the role", "cheerful-x"):
        raise denied
    message = str(caught.value)
    assert "access denied" in message and "iam:CreateRole" in message
    assert "existing instance profile" in message
    assert caught.value.__cause__ is denied
