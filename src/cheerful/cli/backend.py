"""``cheerful init``: create what a backend needs (queues, bucket, workers' role)."""

from __future__ import annotations

import click

from .console import backend_option, err, out

__all__ = ["init"]


@click.command()
@backend_option
@click.option("--create-bucket", is_flag=True, help="create the S3 bucket too if it does not exist")
@click.option(
    "--instance-role",
    is_flag=True,
    help="also create the IAM role and instance profile of cloud workers (s3:// only)",
)
def init(backend: str, create_bucket: bool, instance_role: bool) -> None:
    """Create what the backend needs: for s3:// URLs, the SQS queue and its dead-letter
    queue (and the bucket, with --create-bucket; the workers' IAM role and instance
    profile, limited to this backend's queues and prefix, with --instance-role). Running
    it again changes nothing."""
    from cheerful.durable.backends import init_backend, open_backend
    from cheerful.errors import ConfigError

    if instance_role and not backend.startswith("s3://"):
        raise ConfigError("--instance-role is for s3:// backends (cloud workers)")
    created = init_backend(backend, create_bucket=create_bucket)
    if instance_role:
        from cheerful.durable.backends import parse_s3_url
        from cheerful.durable.fleet import iam

        created += iam.ensure_instance_profile(parse_s3_url(backend))[1]
    for line in created:
        out.print(line)
    with open_backend(backend) as opened:
        url = opened.url
    if not created:
        out.print(f"nothing to do: {url} is ready")
    err.print(f"use it with --backend '{url}' (or export CHEERFUL_BACKEND='{url}')")
