"""The cloud workers' IAM policy (:func:`cheerful.durable.fleet.iam.policy_document`) against a
``moto_server`` that ENFORCES IAM: enough for a real ``cheerful worker --job JOB`` process
to finish its job, and no access to other prefixes of the bucket or other jobs' queues.

The server runs with ``INITIAL_NO_AUTH_ACTION_COUNT=3``: its first 3 requests make an admin
IAM user (inline policy ``*`` on ``*``) and its key; every later request must be signed by a
key of an IAM user moto holds and is checked against that user's policies. The tests set
things up as that admin, put the policy that :func:`~cheerful.durable.fleet.iam.ensure_instance_profile`
installs on a job's worker role on a worker IAM user, and run the worker with only that
user's key.

What moto 5.2 enforces (``moto/iam/access_control.py``, ``moto/core/authorization.py``), and
so what these tests can prove:

- S3 and SQS (and IAM, EC2...; STS GetCallerIdentity is always allowed) are enforced in
  server mode. Identity policies of IAM users and assumed roles only: no resource policies,
  no permission boundaries.
- Actions and Resource ARNs are matched (``*`` as a wildcard; moto does not understand IAM's
  ``${*}`` escapes, so the prefix here has no special characters). S3 object requests are
  checked against ``arn:aws:s3:::bucket/key``, bucket requests against ``arn:aws:s3:::bucket``;
  SQS requests that name a queue URL against the queue's ARN.
- Conditions are NOT evaluated for these requests (only ``StringEquals`` exists in moto, and
  only for trust policies): the ``StringLike s3:prefix`` limit on ``s3:ListBucket`` is not
  tested here; in moto that statement allows listing the whole bucket. Moreover, under
  enforcement moto rejects every listing whose prefix holds a "/" with
  ``SignatureDoesNotMatch`` (getmoto/moto#5948), for admins too: the checks below read
  stored keys by name instead of listing (a worker lists nothing on its normal path).
- A HEAD (or GET) of a missing key is checked as ``s3:GetObject`` on that key: 404 under the
  allowed prefix (as on AWS, where the prefix-limited ``s3:ListBucket`` turns S3's 403 into
  404), 403 elsewhere whether or not the key exists.

Where moto authorizes SQS differently from AWS, the worker user gets one more inline policy,
:func:`moto_only_grants`, and :func:`test_moto_authorizes_some_sqs_calls_differently_from_aws`
pins that moto still needs it:

- moto names ``SendMessageBatch``, ``DeleteMessageBatch`` and ``ChangeMessageVisibilityBatch``
  as actions of their own; AWS authorizes them by ``sqs:SendMessage``, ``sqs:DeleteMessage``
  and ``sqs:ChangeMessageVisibility`` (the policy's). Granted on the job's two queues only.
- moto checks ``GetQueueUrl`` (which names a queue, not a URL) against ``*``, so no
  queue-limited grant can allow it; AWS checks it against the queue's ARN (the policy's).
  Granted on ``*``: in moto the worker user may look up any queue's URL, but not use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from click.testing import CliRunner

import cheerful as cf
from cheerful.cli import main
from cheerful.durable import layout
from cheerful.durable.backends import S3Location, open_backend, parse_s3_url
from cheerful.durable.fleet import iam
from cheerful.durable.queues.sqs import SqsQueue
from cheerful.serialize import loads
from servers import MotoServer, running

ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"
BUCKET = "iam-enforced"
PREFIX = "team/pre"
FREE_REQUESTS = 3  # create_user, put_user_policy, create_access_key of the admin
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
WORKER_TIMEOUT_S = 60

# A script task: counts its runs (a chunk run twice means a lost extension), naps, squares.
SCRIPT = """\
import os, time
with open(os.path.join(runs, str(i)), "a") as f:
    f.write("ran\\n")
time.sleep(nap)
result = i * i
"""


@dataclass
class Keys:
    access_key_id: str
    secret: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret}

    def client(self, service: str, endpoint: str):
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret,
            config=config,
        )


@dataclass
class Deployment:
    """The backend on the enforcing server, set up by the admin."""

    endpoint: str
    admin: Keys
    url: str
    location: S3Location
    tmp: Path

    def queues(self, job: str) -> tuple[str, str]:
        """The URLs of a job's queue and dead-letter queue."""
        sqs = self.admin.client("sqs", self.endpoint)
        names = SqsQueue(self.location.queue).queue_names(job)
        return tuple(sqs.get_queue_url(QueueName=n)["QueueUrl"] for n in names)

    def worker_user(self, job: str, *, moto_only: bool = True) -> Keys:
        """An IAM user holding exactly the policy cheerful puts on ``job``'s worker role
        (plus :func:`moto_only_grants`, unless ``moto_only`` is false)."""
        profile, _ = iam.ensure_instance_profile(self.location, job=job)
        client = self.admin.client("iam", self.endpoint)
        document = client.get_role_policy(RoleName=profile, PolicyName=iam.POLICY_NAME)
        document = document["PolicyDocument"]
        assert document == iam.policy_document(self.location, ACCOUNT, REGION, job)
        user = f"worker-{uuid.uuid4().hex[:8]}"
        client.create_user(UserName=user)
        client.put_user_policy(
            UserName=user, PolicyName=iam.POLICY_NAME, PolicyDocument=json.dumps(document)
        )
        if moto_only:
            client.put_user_policy(
                UserName=user,
                PolicyName="moto-only",
                PolicyDocument=json.dumps(moto_only_grants(document)),
            )
        key = client.create_access_key(UserName=user)["AccessKey"]
        return Keys(key["AccessKeyId"], key["SecretAccessKey"])

    def submit(self, envs: list[dict]) -> cf.Job:
        script = self.tmp / f"task-{uuid.uuid4().hex[:6]}.py"
        script.write_text(SCRIPT)
        return cf.submit_script(script, envs, backend=self.url, chunk_size=2, retries=0)

    def counts(self, queue_url: str) -> int:
        """Messages in a queue, visible or not (read by the admin)."""
        sqs = self.admin.client("sqs", self.endpoint)
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        found = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
        return sum(int(found["Attributes"][n]) for n in names)


def moto_only_grants(document: dict) -> dict:
    """What moto needs on top of ``document`` to allow what AWS allows with it alone (see
    the module docstring): the batch actions' own names on the same queues, and
    ``sqs:GetQueueUrl`` on ``*``."""
    (queues,) = [s for s in document["Statement"] if s["Sid"] == "Queues"]
    granted = set(queues["Action"])
    assert {"sqs:SendMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= granted
    assert "sqs:GetQueueUrl" in granted
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "MotoNamesBatchCallsAsActions",
                "Effect": "Allow",
                "Action": [
                    "sqs:SendMessageBatch",
                    "sqs:DeleteMessageBatch",
                    "sqs:ChangeMessageVisibilityBatch",
                ],
                "Resource": queues["Resource"],
            },
            {
                "Sid": "MotoChecksGetQueueUrlAgainstStar",
                "Effect": "Allow",
                "Action": "sqs:GetQueueUrl",
                "Resource": "*",
            },
        ],
    }


@pytest.fixture(scope="module")
def enforcing_moto(tmp_path_factory):
    """A second moto_server, enforcing IAM after its first requests, and its admin's key."""
    server = MotoServer(
        tmp_path_factory.mktemp("moto-iam"),
        env={"INITIAL_NO_AUTH_ACTION_COUNT": str(FREE_REQUESTS)},
    )
    with running(server, "moto_server"):
        anyone = Keys("free", "requests")  # not checked while requests are free
        client = anyone.client("iam", server.endpoint)
        client.create_user(UserName="admin")
        client.put_user_policy(
            UserName="admin", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL)
        )
        key = client.create_access_key(UserName="admin")["AccessKey"]
        admin = Keys(key["AccessKeyId"], key["SecretAccessKey"])
        with pytest.raises(ClientError, match="InvalidClientTokenId"):  # enforcing now
            anyone.client("iam", server.endpoint).list_users()
        yield server.endpoint, admin


@pytest.fixture(scope="module")
def deployment(enforcing_moto, tmp_path_factory):
    """``cheerful init --create-bucket`` as the admin; the admin's key (and IAM and STS on
    moto) in this process's environment for the module's tests."""
    endpoint, admin = enforcing_moto
    url = f"s3://{BUCKET}/{PREFIX}?region={REGION}&endpoint_url={endpoint}"
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                env.delenv(name)
        env.setenv("AWS_ACCESS_KEY_ID", admin.access_key_id)
        env.setenv("AWS_SECRET_ACCESS_KEY", admin.secret)
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_ENDPOINT_URL", endpoint)  # IAM and STS of ensure_instance_profile
        result = CliRunner().invoke(main, ["init", "--backend", url, "--create-bucket"])
        assert result.exit_code == 0, result.output
        s3 = admin.client("s3", endpoint)
        for key in ("team/other/secret", "team/pre-other/secret", "elsewhere/secret"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"not the worker's")
        yield Deployment(endpoint, admin, url, parse_s3_url(url), tmp_path_factory.mktemp("iam"))


def run_worker(deployment: Deployment, job: cf.Job, keys: Keys, tmp: Path, *options: str):
    """``python -m cheerful worker --job JOB`` with no AWS credentials but ``keys``; return
    (exit code, its stderr). Killed if it outlives WORKER_TIMEOUT_S."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "CHEERFUL_"))
    }
    env.update(
        keys.env(),
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    command = [sys.executable, "-m", "cheerful", "worker", "--backend", deployment.url]
    command += ["--job", job.id, "--idle-exit", "3", "--slots", "2", *options]
    log = tmp / f"worker-{job.id}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            code = process.wait(WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            code = None
    return code, log.read_text(errors="replace")


def without_moto_listing_bug(log: str) -> str:
    """The worker's log without its one line about a listing moto refused: under IAM
    enforcement moto answers every listing of a prefix with "/" SignatureDoesNotMatch
    (getmoto/moto#5948), so a worker cannot list its job's results to learn that the job is
    settled, and leaves when idle instead (it says so once). AWS lists them."""
    return "\n".join(
        line
        for line in log.splitlines()
        if not ("cannot tell whether work is left" in line and "SignatureDoesNotMatch" in line)
    )


def stored_values(deployment: Deployment, job: cf.Job) -> dict[int, object]:
    """Every task's value, read by the admin from the job's result keys by name (chunk
    numbers from the manifest: listing is broken under enforcement, see above)."""
    values: dict[int, object] = {}
    with open_backend(deployment.url) as backend:
        manifest = json.loads(backend.store.get(layout.manifest(job.id)))
        for chunk in range(int(manifest["chunks"])):
            record = loads(backend.store.get(layout.result(job.id, chunk)))
            assert not record.result.errors, record.result.errors
            values.update(zip(record.result.indices, record.result.values, strict=True))
    return values


def denied(call, *args, **kwargs) -> ClientError:
    """Assert that the call is refused as access denied (HTTP 403)."""
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    error = caught.value
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    assert status == 403, error
    assert "AccessDenied" in str(error) or error.response["Error"]["Code"] == "403", error
    return error


# --- the policy is enough ----------------------------------------------------------------


def test_a_worker_with_only_its_jobs_policy_completes_the_job(deployment, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    # Task 0 naps longer than the visibility timeout: its message must be extended.
    envs = [{"i": i, "nap": 3.0 if i == 0 else 0.0, "runs": str(runs)} for i in range(6)]
    job = deployment.submit(envs)
    keys = deployment.worker_user(job.id)

    code, log = run_worker(deployment, job, keys, tmp_path, "--visibility", "2")

    assert code == 0, log
    assert "denied" not in without_moto_listing_bug(log).lower(), log
    assert "0 dead-lettered" in log and "6 task(s) done, 0 failed" in log, log
    assert stored_values(deployment, job) == {i: i * i for i in range(6)}
    assert {p.name: p.read_text() for p in runs.iterdir()} == {str(i): "ran\n" for i in range(6)}
    queue, dead = deployment.queues(job.id)
    assert deployment.counts(queue) == 0  # every finished chunk's message deleted
    assert deployment.counts(dead) == 0  # nothing dead-lettered


def test_a_worker_with_only_its_jobs_policy_dead_letters_a_stray(deployment, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    job = deployment.submit([{"i": 7, "nap": 0.0, "runs": str(runs)}])
    queue, dead = deployment.queues(job.id)
    sqs = deployment.admin.client("sqs", deployment.endpoint)
    sqs.send_message(QueueUrl=queue, MessageBody="not a chunk message")
    keys = deployment.worker_user(job.id)

    code, log = run_worker(deployment, job, keys, tmp_path)

    assert code == 0, log
    assert "denied" not in without_moto_listing_bug(log).lower(), log
    assert "1 dead-lettered" in log, log
    assert stored_values(deployment, job) == {0: 49}
    assert deployment.counts(queue) == 0
    letters = sqs.receive_message(QueueUrl=dead, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in letters] == ["not a chunk message"]


# --- and no more ---------------------------------------------------------------------------


def test_a_jobs_worker_cannot_touch_other_prefixes_or_other_jobs_queues(deployment):
    mine = deployment.submit([{"i": 1, "nap": 0.0, "runs": "/nonexistent"}])
    other = deployment.submit([{"i": 2, "nap": 0.0, "runs": "/nonexistent"}])
    keys = deployment.worker_user(mine.id)
    s3 = keys.client("s3", deployment.endpoint)
    sqs = keys.client("sqs", deployment.endpoint)
    own = f"{PREFIX}/probe"

    # Its own prefix: read, write, delete; a missing key is 404 (GetObject is allowed).
    s3.put_object(Bucket=BUCKET, Key=own, Body=b"x")
    assert s3.get_object(Bucket=BUCKET, Key=own)["Body"].read() == b"x"
    s3.delete_object(Bucket=BUCKET, Key=own)
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}/no/such/key")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    manifest = layout.manifest(mine.id)
    s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{manifest}")

    # Other prefixes, a sibling that merely starts with the prefix included: nothing.
    for key in ("team/other/secret", "team/pre-other/secret", "elsewhere/secret"):
        denied(s3.get_object, Bucket=BUCKET, Key=key)
        denied(s3.head_object, Bucket=BUCKET, Key=key)
        denied(s3.put_object, Bucket=BUCKET, Key=key, Body=b"overwritten")
        denied(s3.delete_object, Bucket=BUCKET, Key=key)
    denied(s3.head_object, Bucket=BUCKET, Key="team/other/missing")  # 403, not 404
    denied(s3.put_object, Bucket=BUCKET, Key="new-prefix/x", Body=b"x")
    admin_s3 = deployment.admin.client("s3", deployment.endpoint)
    assert admin_s3.get_object(Bucket=BUCKET, Key="team/other/secret")["Body"].read() == (
        b"not the worker's"
    )

    # Its own queues: allowed. Another job's queues and the backend's shared queue: not.
    own_queue, own_dead = deployment.queues(mine.id)
    for url in (own_queue, own_dead):
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    other_queue, other_dead = deployment.queues(other.id)
    shared = deployment.admin.client("sqs", deployment.endpoint)
    shared = shared.get_queue_url(QueueName=deployment.location.queue)["QueueUrl"]
    for url in (other_queue, other_dead, shared):
        denied(sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        denied(sqs.send_message, QueueUrl=url, MessageBody="intruder")
        denied(sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["All"])
        denied(sqs.delete_message, QueueUrl=url, ReceiptHandle="made-up")
        denied(sqs.change_message_visibility, QueueUrl=url, ReceiptHandle="x", VisibilityTimeout=0)
        entries = [{"Id": "0", "ReceiptHandle": "made-up"}]
        denied(sqs.delete_message_batch, QueueUrl=url, Entries=entries)
    denied(sqs.list_queues)  # a job's worker does not list queues
    assert deployment.counts(other_queue) == 1  # the other job's chunk is still there


def test_moto_authorizes_some_sqs_calls_differently_from_aws(deployment):
    """Why :func:`moto_only_grants` exists: with the job's policy alone, moto refuses
    ``GetQueueUrl`` of the job's own queue and ``DeleteMessageBatch`` on it, which AWS
    allows. If this fails, moto now matches AWS here: drop the matching grant."""
    job = deployment.submit([{"i": 3, "nap": 0.0, "runs": "/nonexistent"}])
    keys = deployment.worker_user(job.id, moto_only=False)
    sqs = keys.client("sqs", deployment.endpoint)
    queue, _ = deployment.queues(job.id)
    name = SqsQueue(deployment.location.queue).queue_names(job.id)[0]

    assert "sqs:GetQueueUrl" in str(denied(sqs.get_queue_url, QueueName=name))
    entries = [{"Id": "0", "ReceiptHandle": "made-up"}]
    error = denied(sqs.delete_message_batch, QueueUrl=queue, Entries=entries)
    assert "sqs:DeleteMessageBatch" in str(error)
    sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])  # the rest works


def test_a_worker_the_queue_refuses_leaves_after_its_idle_time(deployment, tmp_path):
    """A cloud worker without the rights to its job's queue must not retry forever (its
    instance would never power off): failed receives count toward --idle-exit."""
    job = deployment.submit([{"i": 0, "nap": 0.0, "runs": str(tmp_path)}])
    other = deployment.submit([{"i": 1, "nap": 0.0, "runs": str(tmp_path)}])
    keys = deployment.worker_user(other.id)  # the rights of another job only

    code, log = run_worker(deployment, job, keys, tmp_path)

    assert code == 0, log
    assert "receiving failed" in log and "access denied" in log, log
    assert "stopped (idle)" in log and "0 chunk(s)" in log, log
