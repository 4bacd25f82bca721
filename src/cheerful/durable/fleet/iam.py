"""The IAM role and instance profile of cloud workers: least privilege, made idempotently.

A worker on an EC2 instance gets its AWS rights from an instance profile, never from a key
in user-data. :func:`policy_document` is what the role may do, and no more:

- SQS: receive, delete, extend (change visibility), send (a dead letter is a copy sent to
  the dead-letter queue), look up and read the attributes of the job's queue and its
  dead-letter queue only; or, for a worker that serves every job of the backend, of the
  backend's queues ``Q`` and ``Q--*``, plus ``sqs:ListQueues`` to find the jobs' queues.
  SQS authorizes ``SendMessageBatch``, ``DeleteMessageBatch`` and
  ``ChangeMessageVisibilityBatch`` by the single-message actions; they are no IAM actions.
- S3: read, write and delete objects under the backend's prefix, abort a multipart upload
  there (a failed write of an object over 64 MiB), and list the bucket only under the
  prefix. A missing key may then be answered 403 rather than 404 (S3 gives 404 only to
  whom may list that key); the S3 store tells the two apart by listing the one key.

:func:`ensure_instance_profile` makes the role (EC2 may assume it), puts the policy on it
(again on every run: a rerun updates it), makes the instance profile of the same name and
puts the role in it; :func:`delete_instance_profile` undoes it. Both only touch a role
tagged as cheerful's for the same queue and job. IAM is eventually consistent: a profile
made a moment ago may be refused by EC2 for some seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cheerful.errors import BackendError, ConfigError, FleetError

from ..aws import AwsClients, aws_errors, error_code
from ..backends import S3Location

__all__ = [
    "POLICY_NAME",
    "delete_instance_profile",
    "ensure_instance_profile",
    "policy_document",
    "role_name",
    "trust_policy",
]

POLICY_NAME = "cheerful-worker"
"""The name of the inline policy cheerful puts on a worker role."""
QUEUE_TAG = "cheerful:queue"
JOB_TAG = "cheerful:job"
SQS_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
)
"""What a worker does with its queues (each also authorizes its batch form)."""
S3_OBJECT_ACTIONS = (
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetObject",
    "s3:PutObject",
)
"""What a worker does with the objects under the prefix (GetObject covers HeadObject,
PutObject the parts of a multipart upload)."""
_MAX_NAME = 64
_NOT_IAM = re.compile(r"[^\w+=,.@-]", re.ASCII)
_NO_ENTITY = "NoSuchEntity"
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
_IAM_RIGHTS = (
    "iam:GetRole, iam:CreateRole, iam:TagRole, iam:UpdateAssumeRolePolicy, "
    "iam:GetRolePolicy, iam:PutRolePolicy, iam:GetInstanceProfile, "
    "iam:CreateInstanceProfile, iam:TagInstanceProfile, iam:AddRoleToInstanceProfile"
)


def trust_policy() -> dict[str, Any]:
    """The trust policy of a worker role: EC2 instances may assume it, nobody else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def role_name(location: S3Location, job: str | None = None) -> str:
    """The name of the worker role (and instance profile) of a backend, or of one job:
    ``cheerful-<queue>`` or ``cheerful-<queue>-<hash8 of job>``, at most 64 characters."""
    name = f"cheerful-{location.queue}"
    if job:
        name += "-" + _hash8(job)
    return _iam_name(name)


def policy_document(
    location: S3Location,
    account: str,
    region_of_queues: str,
    job: str | None = None,
    *,
    partition: str = "aws",
) -> dict[str, Any]:
    """The least-privilege IAM policy of workers of ``job`` (or of every job, ``None``)
    on the backend at ``location``, whose queues are in ``region_of_queues`` of
    ``account`` (``partition`` is "aws-cn" or "aws-us-gov" outside AWS's main regions)."""
    from ..queues.sqs import SqsQueue

    sqs_arn = f"arn:{partition}:sqs:{region_of_queues}:{account}:"
    if job:
        queue, dead = SqsQueue(location.queue).queue_names(job)
        queues = [sqs_arn + queue, sqs_arn + dead]
    else:
        queues = [sqs_arn + location.queue, sqs_arn + location.queue + "--*"]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Queues",
            "Effect": "Allow",
            "Action": list(SQS_ACTIONS),
            "Resource": queues,
        }
    ]
    if not job:  # a worker of every job lists the queues to find the jobs' queues
        statements.append(
            {"Sid": "FindQueues", "Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}
        )
    bucket = f"arn:{partition}:s3:::{location.bucket}"
    prefix = _literal(location.prefix)
    statements.append(
        {
            "Sid": "Objects",
            "Effect": "Allow",
            "Action": list(S3_OBJECT_ACTIONS),
            "Resource": f"{bucket}/{prefix}/*" if prefix else f"{bucket}/*",
        }
    )
    listing: dict[str, Any] = {
        "Sid": "List",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": bucket,
    }
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
    statements.append(listing)
    return {"Version": "2012-10-17", "Statement": statements}


def ensure_instance_profile(
    location: S3Location, *, job: str | None = None, name: str | None = None
) -> tuple[str, list[str]]:
    """Make (or update) the worker role and instance profile of the backend at
    ``location`` (for ``job``, or for every job) and return the instance profile's name
    and one line per thing created or changed (none when all was in place).

    ``name`` replaces :func:`role_name`. Raises ConfigError if a role of that name exists
    and is not cheerful's for this queue and job, FleetError if IAM refuses,
    BackendError if STS does.
    """
    name = _iam_name(name) if name else role_name(location, job)
    clients = _clients(location)
    iam = clients.client("iam")
    account, partition = _identity(clients)
    region = _queue_region(clients)
    document = policy_document(location, account, region, job, partition=partition)
    tags = _tags(location, job)
    done: list[str] = []

    role = _get(iam.get_role, "read the role", name, RoleName=name)
    if role is None:
        with _iam_errors("create the role", name):
            try:
                iam.create_role(
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(trust_policy()),
                    Description=_description(location, job),
                    Tags=tags,
                )
                done.append(f"created IAM role {name} (EC2 instances may assume it)")
            except Exception as exc:
                if error_code(exc) != "EntityAlreadyExists":  # made meanwhile: fine
                    raise
    else:
        _check_ours(role["Role"], name, location, job)
        if not _ec2_only(_document(role["Role"].get("AssumeRolePolicyDocument"))):
            with _iam_errors("update the trust policy of the role", name):
                iam.update_assume_role_policy(
                    RoleName=name, PolicyDocument=json.dumps(trust_policy())
                )
            done.append(f"set the trust policy of IAM role {name} to EC2 only")

    current = _get(
        iam.get_role_policy,
        "read the policy of the role",
        name,
        RoleName=name,
        PolicyName=POLICY_NAME,
    )
    if current is None or _document(current.get("PolicyDocument")) != document:
        with _iam_errors("put the policy on the role", name):
            iam.put_role_policy(
                RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(document)
            )
        verb = "put" if current is None else "updated"
        done.append(f"{verb} policy {POLICY_NAME} on IAM role {name}: {_summary(document)}")

    profile = _get(
        iam.get_instance_profile,
        "read the instance profile",
        name,
        InstanceProfileName=name,
    )
    if profile is None:
        with _iam_errors("create the instance profile", name):
            try:
                iam.create_instance_profile(InstanceProfileName=name, Tags=tags)
                done.append(f"created instance profile {name}")
            except Exception as exc:
                if error_code(exc) != "EntityAlreadyExists":
                    raise
        roles: list[str] = []
    else:
        roles = [r["RoleName"] for r in profile["InstanceProfile"].get("Roles", ())]
    if name not in roles:
        if roles:
            raise ConfigError(
                f"instance profile {name} holds role {roles[0]}, not {name}; remove that "
                f"role from it (aws iam remove-role-from-instance-profile "
                f"--instance-profile-name {name} --role-name {roles[0]}) or choose another name"
            )
        with _iam_errors("add the role to the instance profile", name):
            try:
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
            except Exception as exc:
                if error_code(exc) != "LimitExceeded":  # added meanwhile
                    raise
        done.append(f"added IAM role {name} to instance profile {name}")
    return name, done


def delete_instance_profile(
    location: S3Location, *, job: str | None = None, name: str | None = None
) -> list[str]:
    """Delete the instance profile, the role's policy and the role that
    :func:`ensure_instance_profile` made; return one line per thing deleted. Missing parts
    are skipped; a role of that name that is not cheerful's is left alone (ConfigError)."""
    name = _iam_name(name) if name else role_name(location, job)
    iam = _clients(location).client("iam")
    done: list[str] = []
    role = _get(iam.get_role, "read the role", name, RoleName=name)
    if role is not None:
        _check_ours(role["Role"], name, location, job)
    profile = _get(
        iam.get_instance_profile, "read the instance profile", name, InstanceProfileName=name
    )
    if profile is not None:
        _check_ours(profile["InstanceProfile"], name, location, job, "instance profile")
        for held in profile["InstanceProfile"].get("Roles", ()):
            with _iam_errors("remove the role from the instance profile", name):
                _tolerate(
                    iam.remove_role_from_instance_profile,
                    InstanceProfileName=name,
                    RoleName=held["RoleName"],
                )
        with _iam_errors("delete the instance profile", name):
            if _tolerate(iam.delete_instance_profile, InstanceProfileName=name):
                done.append(f"deleted instance profile {name}")

    if role is not None:
        with _iam_errors("delete the policy of the role", name):
            if _tolerate(iam.delete_role_policy, RoleName=name, PolicyName=POLICY_NAME):
                done.append(f"deleted policy {POLICY_NAME} of IAM role {name}")
        with _iam_errors("list the instance profiles of the role", name):
            others = iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]
        for other in others:  # the role is in another profile too: take it out
            with _iam_errors(
                "remove the role from the instance profile", other["InstanceProfileName"]
            ):
                _tolerate(
                    iam.remove_role_from_instance_profile,
                    InstanceProfileName=other["InstanceProfileName"],
                    RoleName=name,
                )
        with _iam_errors("delete the role", name):
            if _tolerate(iam.delete_role, RoleName=name):
                done.append(f"deleted IAM role {name}")
    return done


# Helpers.


def _clients(location: S3Location) -> AwsClients:
    return AwsClients(
        location.region, location.s3_endpoint, location.sqs_endpoint, location.profile
    )


def _identity(clients: AwsClients) -> tuple[str, str]:
    """The account id and the partition of the caller."""
    with aws_errors(BackendError, "read the caller's identity (sts)", "AWS STS"):
        identity = clients.client("sts").get_caller_identity()
    arn = identity.get("Arn", "")
    partition = arn.split(":")[1] if arn.count(":") >= 5 else "aws"
    return identity["Account"], partition or "aws"


def _queue_region(clients: AwsClients) -> str:
    """The region of the backend's queues: the URL's, else the default one."""
    with aws_errors(BackendError, "open an SQS client", clients.region or "default region"):
        region = clients.client("sqs").meta.region_name
    if not region:
        raise ConfigError(
            "no AWS region for the queues; add '?region=eu-west-1' (say) to the backend URL "
            "or set AWS_DEFAULT_REGION"
        )
    return region


def _tags(location: S3Location, job: str | None) -> list[dict[str, str]]:
    tags = [{"Key": QUEUE_TAG, "Value": location.queue}]
    if job:
        tags.append({"Key": JOB_TAG, "Value": job})
    return tags


def _description(location: S3Location, job: str | None) -> str:
    where = f"s3://{location.bucket}/{location.prefix}, queue {location.queue}"
    return f"cheerful workers of {where}" + (f", job {job}" if job else ", every job")


def _check_ours(
    entity: dict[str, Any],
    name: str,
    location: S3Location,
    job: str | None,
    kind: str = "IAM role",
) -> None:
    """Refuse to put a policy on (or delete) a role or profile that cheerful did not make
    for this queue and job: that would grant, or take away, someone else's access."""
    tags = {t["Key"]: t["Value"] for t in entity.get("Tags") or ()}
    if tags.get(QUEUE_TAG) == location.queue and tags.get(JOB_TAG) == (job or None):
        return
    owner = (
        f"is tagged for queue {tags[QUEUE_TAG]!r}"
        + (f" and job {tags[JOB_TAG]!r}" if JOB_TAG in tags else "")
        if QUEUE_TAG in tags
        else "was not made by cheerful"
    )
    raise ConfigError(
        f"{kind} {name} exists and {owner}, not for queue {location.queue!r}"
        + (f" and job {job!r}" if job else " (every job)")
        + "; cheerful leaves it alone. Choose another role name, or pass the name of an "
        "existing instance profile to use as it is"
    )


def _ec2_only(document: Any) -> bool:
    """Whether a trust policy lets EC2, and only EC2, assume the role."""
    if not isinstance(document, dict):
        return False
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or len(statements) != 1:
        return False
    s = statements[0]
    principal = s.get("Principal") if isinstance(s, dict) else None
    services = principal.get("Service") if isinstance(principal, dict) else None
    actions = s.get("Action")
    return (
        s.get("Effect") == "Allow"
        and set(principal) == {"Service"}
        and services in ("ec2.amazonaws.com", ["ec2.amazonaws.com"])
        and actions in ("sts:AssumeRole", ["sts:AssumeRole"])
        and "Condition" not in s
    )


def _document(value: Any) -> Any:
    """A policy document as IAM returns it (botocore decodes it; some services do not)."""
    if isinstance(value, str):
        from urllib.parse import unquote

        try:
            return json.loads(value)
        except ValueError:
            try:
                return json.loads(unquote(value))
            except ValueError:
                return None
    return value


def _summary(document: dict[str, Any]) -> str:
    resources: list[str] = []
    for statement in document["Statement"]:
        found = statement["Resource"]
        resources += [found] if isinstance(found, str) else found
    names = [r.rsplit(":", 1)[-1] for r in resources if r.startswith("arn:") and ":sqs:" in r]
    objects = [r.split(":::", 1)[1] for r in resources if ":s3:::" in r and "/" in r]
    return f"SQS {', '.join(names)}; S3 {', '.join('s3://' + o for o in objects)}"


def _get(call: Any, action: str, name: str, **kwargs: Any) -> dict[str, Any] | None:
    """The answer of an IAM read, or None if the entity does not exist."""
    with _iam_errors(action, name):
        try:
            return call(**kwargs)
        except Exception as exc:
            if error_code(exc) == _NO_ENTITY:
                return None
            raise


def _tolerate(call: Any, **kwargs: Any) -> bool:
    """Make an IAM delete; False if what it deletes was already gone."""
    try:
        call(**kwargs)
        return True
    except Exception as exc:
        if error_code(exc) == _NO_ENTITY:
            return False
        raise


@contextmanager
def _iam_errors(action: str, name: str) -> Iterator[None]:
    """:func:`~cheerful.durable.aws.aws_errors` for IAM, with what to do when IAM says no."""
    try:
        with aws_errors(FleetError, action + " (iam)", f"IAM {name}"):
            yield
    except FleetError as exc:
        cause = exc.__cause__
        if cause is None or error_code(cause) not in _DENIED:
            raise
        raise FleetError(
            f"{exc}. Making the workers' role and instance profile needs IAM rights "
            f"({_IAM_RIGHTS}) on role and instance profile {name}: ask an administrator "
            "to grant them, or to make the instance profile, and pass the name of an "
            "existing instance profile instead"
        ) from cause


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _iam_name(name: str) -> str:
    """``name`` as a valid IAM role name: [\\w+=,.@-], at most 64 characters (else cut,
    with a hash of the whole name so two long names stay apart)."""
    clean = _NOT_IAM.sub("-", name)
    if len(clean) <= _MAX_NAME and clean == name:
        return name
    return f"{clean[: _MAX_NAME - 9]}-{_hash8(name)}"


def _literal(text: str) -> str:
    """``text`` for an IAM resource or StringLike pattern: '*', '?' and '$' taken
    literally (IAM's ``${*}``, ``${?}``, ``${$}``)."""
    return re.sub(r"[*?$]", lambda m: "${" + m.group(0) + "}", text)
