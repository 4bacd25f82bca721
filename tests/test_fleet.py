"""Cloud fleets (``cf.fleet`` and ``cheerful fleet``) against a real ``moto_server``.

EC2, IAM, SSM and STS reach moto through boto3's own ``AWS_ENDPOINT_URL`` setting; S3 and
SQS through the backend URL's ``endpoint_url``. moto launches no machine: it records the
requests, so these tests check what was asked for (types, zones, tags, user-data, launch
template, instance profile) and that status and down find it again in every region.
"""

from __future__ import annotations

import base64
import json
import re
import time

import boto3
import pytest
from click.testing import CliRunner

import cheerful as cf
from cheerful.cli import main
from cheerful.durable import layout
from cheerful.durable.backends import open_backend
from cheerful.errors import ConfigError
from servers import TEST_CREDENTIALS

SECRET_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"(?i)aws_secret_access_key|aws_session_token|secretaccesskey"),
    re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
]


@pytest.fixture
def cloud(moto_server, monkeypatch):
    """EC2, IAM, SSM and STS calls go to moto (boto3's standard endpoint setting)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    return moto_server


@pytest.fixture
def s3_url(cloud, new_s3_backend) -> str:
    return new_s3_backend("team")


@pytest.fixture
def job(s3_url):
    return cf.submit(abs, range(4), backend=s3_url, chunk_size=2)


def ec2(region: str = "us-east-1"):
    return boto3.client("ec2", region_name=region)


def assert_no_secrets(text: str) -> None:
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), f"{pattern.pattern} found"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert name not in text
        assert f"={TEST_CREDENTIALS[name]}" not in text


def template_data(template_id: str, region: str = "us-east-1") -> dict:
    versions = ec2(region).describe_launch_template_versions(LaunchTemplateId=template_id)
    return versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]


def test_up_launches_spot_workers_of_several_types_over_every_zone(s3_url, job) -> None:
    launch = cf.fleet.up(s3_url, job=job.id, count=3, types=("c6i.large", "c5.large"))
    assert launch.granted == 3 and not launch.errors
    assert {i["lifecycle"] for i in launch.instances} == {"spot"}
    request = launch.requests["us-east-1"]["CreateFleet"]
    assert request["Type"] == "instant"
    assert request["SpotOptions"] == {"AllocationStrategy": "capacity-optimized"}
    overrides = request["LaunchTemplateConfigs"][0]["Overrides"]
    zones = {s["SubnetId"] for s in ec2().describe_subnets()["Subnets"] if s["DefaultForAz"]}
    assert {o["InstanceType"] for o in overrides} == {"c6i.large", "c5.large"}
    assert {o["SubnetId"] for o in overrides} == zones and len(zones) > 1

    ids = [i["id"] for i in launch.instances]
    rows = ec2().describe_instances(InstanceIds=ids)["Reservations"]
    for row in (r for res in rows for r in res["Instances"]):
        tags = {t["Key"]: t["Value"] for t in row["Tags"]}
        assert tags["cheerful:job"] == job.id and tags["cheerful:launch"] == launch.id

    data = template_data(launch.requests["us-east-1"]["launch_template"])
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["IamInstanceProfile"]["Name"].startswith("cheerful-")
    user_data = base64.b64decode(data["UserData"]).decode()
    assert user_data == launch.user_data and len(user_data.encode()) < 16 * 1024
    assert job.id in user_data and "fleet/bundles/" in user_data
    assert_no_secrets(user_data)

    with open_backend(s3_url) as backend:  # the wheel the instances install is stored
        wheel_key = re.search(r"CHEERFUL_WHEEL_KEY=(\S+)", user_data)[1]
        assert backend.store.get(wheel_key)[:2] == b"PK"
        record = json.loads(backend.store.get(layout.launch(launch.id)))
    assert sorted(i["id"] for i in record["regions"]["us-east-1"]["instances"]) == sorted(ids)


def test_two_regions_then_more_workers_then_down_everywhere(s3_url, job) -> None:
    first = cf.fleet.up(s3_url, job=job.id, count=3, regions=("us-east-1", "eu-west-1"))
    assert sorted(i["region"] for i in first.instances) == ["eu-west-1", "us-east-1", "us-east-1"]
    assert {i.region for i in cf.fleet.status(s3_url)} == {"us-east-1", "eu-west-1"}

    more = cf.fleet.up(s3_url, job=job.id, count=2, types=("m6i.large",), regions=("eu-west-1",))
    found = cf.fleet.status(s3_url, job=job.id)
    assert len(found) == 5 and more.granted == 2
    assert sum(i.type == "m6i.large" for i in found) == 2
    assert all(i.job == job.id and i.state in ("pending", "running") for i in found)

    lines = cf.fleet.down(s3_url)
    assert len(lines) == 5 and all(line.startswith("terminated i-") for line in lines)
    assert cf.fleet.status(s3_url) == [] or all(
        i.state in ("shutting-down", "terminated") for i in cf.fleet.status(s3_url)
    )
    assert not ec2("eu-west-1").describe_launch_templates(
        Filters=[{"Name": "tag:cheerful:launch", "Values": [more.id]}]
    )["LaunchTemplates"]


def test_down_for_one_job_leaves_the_others(s3_url, job) -> None:
    other = cf.submit(abs, range(2), backend=s3_url)
    cf.fleet.up(s3_url, job=job.id, count=1)
    cf.fleet.up(s3_url, job=other.id, count=2)
    assert len(cf.fleet.down(s3_url, job=other.id)) == 2
    live = [i for i in cf.fleet.status(s3_url) if i.state in ("pending", "running")]
    assert [i.job for i in live] == [job.id]


def test_the_role_of_a_job_grants_exactly_its_queues_and_the_prefix(s3_url, job) -> None:
    launch = cf.fleet.up(s3_url, job=job.id, count=1)
    profile = template_data(launch.requests["us-east-1"]["launch_template"])
    name = profile["IamInstanceProfile"]["Name"]
    iam = boto3.client("iam")
    role = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"][0]
    policies = iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=policies[0])
    statements = document["PolicyDocument"]["Statement"]
    resources = sorted(
        r
        for s in statements
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    )
    queue, dead = job.backend.queue.queue_names(job.id)
    bucket = s3_url.split("/")[2]
    assert resources == sorted(
        [
            f"arn:aws:s3:::{bucket}",
            f"arn:aws:s3:::{bucket}/team/*",
            f"arn:aws:sqs:us-east-1:123456789012:{queue}",
            f"arn:aws:sqs:us-east-1:123456789012:{dead}",
        ]
    )


def test_status_shows_prices_and_the_job_its_cost(s3_url, job) -> None:
    launch = cf.fleet.up(s3_url, job=job.id, count=2)
    assert launch.estimate is not None and launch.estimate.per_instance is not None
    assert all(i.price is not None and i.price > 0 for i in cf.fleet.status(s3_url))
    dollars, running = cf.fleet.spent(s3_url, job.id)
    assert running == 2 and dollars >= 0.0
    shown = CliRunner().invoke(main, ["status", job.id, "--backend", s3_url])
    assert shown.exit_code == 0, shown.output
    assert "cloud workers: 2 running" in shown.output
    table = CliRunner().invoke(main, ["fleet", "status", "--backend", s3_url])
    assert table.exit_code == 0 and table.output.count(" spot ") == 2, table.output


def test_dry_run_prints_the_user_data_and_the_request_and_launches_nothing(s3_url, job) -> None:
    before = ec2().describe_instances()["Reservations"]
    result = CliRunner().invoke(
        main,
        ["fleet", "up", "--backend", s3_url, "--job", job.id, "--count", "2", "--dry-run"],
    )
    assert result.exit_code == 0, result.output
    assert "#!/bin/bash" in result.output and '"TotalTargetCapacity": 2' in result.output
    assert "dry run: nothing launched" in result.output
    assert ec2().describe_instances()["Reservations"] == before
    with open_backend(s3_url) as backend:
        assert list(backend.store.list(layout.launches_prefix())) == []
        assert list(backend.store.list("fleet/bundles")) == []
    assert_no_secrets(result.output)


def test_cli_up_status_down(s3_url, job) -> None:
    runner = CliRunner()
    launched = runner.invoke(
        main, ["fleet", "up", "--backend", s3_url, "--job", job.id, "--count", "2"]
    )
    assert launched.exit_code == 0, launched.output
    assert launched.output.count("launched i-") == 2 and "2 of 2 instance(s)" in launched.output
    down = runner.invoke(main, ["fleet", "down", "--backend", s3_url])
    assert down.exit_code == 0 and down.output.count("terminated i-") == 2, down.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "count must be"),
        ({"count": 1, "types": ("c6i_large",)}, "must look like"),
        ({"count": 1, "types": ("zz9.huge",)}, "not offered"),
        ({"count": 1, "requirements": "/no/such/file.txt"}, "does not exist"),
        ({"count": 1, "max_dollars": 0}, "more than 0"),
        ({"count": 1, "max_dollars": -3.5}, "more than 0"),
        ({"count": 1, "setup": ("",)}, "setup takes shell commands"),
        ({"count": 1, "regions": ("us-east-1", "eu-west-1")}, None),
    ],
)
def test_bad_requests_say_what_to_do(s3_url, job, options, message) -> None:
    if message is None:  # 2 regions, 1 instance
        with pytest.raises(ConfigError, match="count of at least 2"):
            cf.fleet.up(s3_url, job=job.id, **options)
        return
    with pytest.raises(ConfigError, match=message):
        cf.fleet.up(s3_url, job=job.id, **options)


def test_a_local_backend_or_a_missing_job_is_refused(s3_url, tmp_path) -> None:
    with pytest.raises(ConfigError, match="need an s3:// backend"):
        cf.fleet.up(f"local://{tmp_path}", count=1)
    with pytest.raises(ConfigError, match="submit it first"):
        cf.fleet.up(s3_url, job="no-such-job", count=1)


def test_init_makes_the_instance_role_of_every_job_once(s3_url, tmp_path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["init", "--backend", s3_url, "--instance-role"])
    assert first.exit_code == 0, first.output
    assert "instance profile" in first.output.lower()
    again = runner.invoke(main, ["init", "--backend", s3_url, "--instance-role"])
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output
    local = runner.invoke(main, ["init", "--backend", f"local://{tmp_path}/x", "--instance-role"])
    assert local.exit_code == 2 and "s3:// backends" in local.output
    assert not (tmp_path / "x").exists()


def test_money_is_readable_at_every_scale() -> None:
    from cheerful.durable.fleet.cost import money

    assert [money(x) for x in (0, 1e-05, 0.0123, 0.1, 1234.5)] == [
        "$0",
        "$0.00001",
        "$0.0123",
        "$0.10",
        "$1,234.50",
    ]


def test_each_architecture_gets_the_regions_current_image_from_ssm(s3_url, job) -> None:
    """moto serves Amazon Linux's public SSM parameters, not Canonical's: the fallback."""
    ssm = boto3.client("ssm", region_name="us-east-1")
    latest = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-"
    x86 = ssm.get_parameter(Name=latest + "x86_64")["Parameter"]["Value"]
    arm = ssm.get_parameter(Name=latest + "arm64")["Parameter"]["Value"]
    launch = cf.fleet.up(s3_url, job=job.id, count=1, types=("c6i.large", "c7g.large"))
    overrides = launch.requests["us-east-1"]["CreateFleet"]["LaunchTemplateConfigs"][0]
    images = {o["InstanceType"]: o["ImageId"] for o in overrides["Overrides"]}
    assert images == {"c6i.large": x86, "c7g.large": arm}
    mine = cf.fleet.up(s3_url, job=job.id, count=1, image="ami-0abcdef1234567890", dry_run=True)
    overrides = mine.requests["us-east-1"]["CreateFleet"]["LaunchTemplateConfigs"][0]
    assert {o["ImageId"] for o in overrides["Overrides"]} == {"ami-0abcdef1234567890"}


def test_a_zone_without_price_history_takes_the_types_price_elsewhere() -> None:
    from cheerful.durable.fleet.cost import spot_price

    prices = {("c5.large", "z-a"): 0.03, ("c5.large", "z-b"): 0.05, ("m6i.large", "z-a"): 0.04}
    assert spot_price(prices, "c5.large", "z-a") == 0.03
    assert spot_price(prices, "c5.large", "z-e") == 0.04  # the median of its other zones
    assert spot_price(prices, "c7g.large", "z-a") is None


def test_setup_commands_and_a_budget_go_into_the_bootstrap(s3_url, job) -> None:
    setup = ("apt-get install -y -qq r-base-core", "echo 'it''s ready' > /tmp/ready")
    started = time.time()
    launch = cf.fleet.up(s3_url, job=job.id, count=2, setup=setup, max_dollars=1.5)
    prices = [i["price"] for i in launch.instances]
    assert launch.stop_at is not None
    hours = (launch.stop_at - started) / 3600
    assert 1.5 / (2 * max(prices)) * 0.99 <= hours <= 1.5 / (2 * min(prices)) * 1.01
    data = template_data(launch.requests["us-east-1"]["launch_template"])
    user_data = base64.b64decode(data["UserData"]).decode()
    assert user_data == launch.user_data
    assert "CHEERFUL_SETUP=('apt-get install -y -qq r-base-core'" in user_data
    assert f"--stop-at {launch.stop_at:.0f}" in user_data and "CHEERFUL_HARD_STOP=" in user_data
    with open_backend(s3_url) as backend:
        (key,) = backend.store.list(layout.launches_prefix())
        record = json.loads(backend.store.get(key))
    assert record["max_dollars"] == 1.5 and record["stop_at"] == launch.stop_at


def test_a_failed_setup_shows_in_fleet_status_and_in_the_jobs_status(s3_url, job) -> None:
    launch = cf.fleet.up(s3_url, job=job.id, count=1, setup=("false",))
    (instance,) = launch.instances
    failure = {"node": instance["id"], "state": "setup failed", "command": "false",
               "exit_code": 1, "at": time.time()}  # fmt: skip
    with open_backend(s3_url) as backend:  # as the bootstrap records it
        backend.store.put(layout.boot_record(instance["id"]), json.dumps(failure).encode())
    (found,) = cf.fleet.status(s3_url)
    assert found.trouble == "setup failed: false (exit code 1)"
    table = CliRunner().invoke(main, ["fleet", "status", "--backend", s3_url])
    assert "setup failed: false (exit code 1)" in table.output, table.output
    shown = CliRunner().invoke(main, ["status", job.id, "--backend", s3_url])
    assert f"instance {instance['id']}: setup failed: false (exit code 1)" in shown.output


def test_a_spent_budget_shows_in_the_jobs_status(s3_url, job) -> None:
    launch = cf.fleet.up(s3_url, job=job.id, count=1, max_dollars=0.01)
    with open_backend(s3_url) as backend:  # its time is up
        key = layout.launch(launch.id)
        record = json.loads(backend.store.get(key))
        record["stop_at"] = time.time() - 1
        backend.store.put(key, json.dumps(record).encode())
    shown = CliRunner().invoke(main, ["status", job.id, "--backend", s3_url])
    assert "stopped on its budget of $0.01" in shown.output, shown.output
