"""Cloud workers on EC2: launch a fleet for a backend (or one job), see it, take it down.

:func:`up` makes one EC2 Fleet request of type ``instant`` per region: spot by default,
every requested instance type in every availability zone of the region's default VPC, with
the capacity-optimized allocation, from a launch template that carries the bootstrap
(:mod:`.userdata`), the worker's instance profile (:mod:`.iam`), IMDSv2 only and shutdown
behaviour "terminate". Everything it makes is tagged ``cheerful:backend`` (a hash of the
backend URL), ``cheerful:job`` and ``cheerful:launch``; what it launched is recorded at
``fleet/launches/<launch>.json`` in the store, so :func:`status`, :func:`down` and
:func:`spent` find every region used from any machine. Calling :func:`up` again adds
workers; zero granted instances is a warning, not an error: the job waits in the queue.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cheerful.errors import ConfigError, FleetError
from cheerful.gpus import has_gpus

from .. import layout
from ..aws import AwsClients, aws_errors, error_code
from ..backends import S3Location, open_backend, parse_s3_url
from . import DEFAULT_IDLE_EXIT_S, DEFAULT_TYPES
from .budget import check_budget, stop_time
from .cost import ON_DEMAND_USD, Estimate, estimate, spot_price, spot_prices
from .userdata import BootSpec, render_user_data

__all__ = [
    "DEFAULT_TYPES",
    "FleetOptions",
    "Launch",
    "backend_tag",
    "ec2_client",
    "location",
    "up",
]

PROFILE_TRIES = 6
PROFILE_WAIT_S = 5.0
"""A new instance profile can be unknown to EC2 for some seconds: tries and pause."""
_TYPE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")
_UBUNTU = "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"
_AMAZON = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
_ARCH_NAMES = {"x86_64": ("amd64", "x86_64"), "arm64": ("arm64", "arm64")}


@dataclass(frozen=True)
class FleetOptions:
    """How to launch: ``count`` instances of ``types`` over ``regions`` (default: the
    backend's region), spot unless ``spot`` is False."""

    count: int
    types: tuple[str, ...] = DEFAULT_TYPES
    regions: tuple[str, ...] = ()
    spot: bool = True
    slots: int | None = None
    max_price: float | None = None
    image: str | None = None
    requirements: str | None = None
    idle_exit: float = DEFAULT_IDLE_EXIT_S
    instance_profile: str | None = None
    dry_run: bool = False
    setup: tuple[str, ...] = ()
    max_dollars: float | None = None


@dataclass
class Launch:
    """What one :func:`up` did (or, with ``dry_run``, would do)."""

    id: str
    job: str | None
    requested: int
    instances: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    estimate: Estimate | None = None
    user_data: str = ""
    requests: dict[str, dict] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    stop_at: float | None = None

    @property
    def granted(self) -> int:
        """How many instances EC2 granted."""
        return len(self.instances)


def up(backend: str, *, job: str | None = None, **options: Any) -> Launch:
    """Launch cloud workers for ``backend`` (an ``s3://`` URL), serving ``job`` only if
    given; ``options`` are the fields of :class:`FleetOptions`. Returns the
    :class:`Launch` (with ``dry_run``: the user-data and requests, nothing launched)."""
    opts = _checked(FleetOptions(**options))
    where = location(backend)
    with open_backend(where.url) as opened:
        if job is not None:
            _check_job(opened, job)
        launch = Launch(_launch_id(), job, opts.count)
        wheel_key, requirements_key = _bundle(opened.store, opts, dry=opts.dry_run)
        boot = BootSpec(
            backend=where.url,
            wheel_key=wheel_key,
            python=f"{sys.version_info.major}.{sys.version_info.minor}",
            requirements_key=requirements_key,
            job=job,
            slots=opts.slots,
            idle_exit=opts.idle_exit,
            setup=opts.setup,
            gpus=any(has_gpus(t) for t in opts.types),
        )
        launch.user_data = render_user_data(boot)
        profile = _profile(where, job, opts, launch)
        shares = _split(opts.count, opts.regions or (_region(where),))
        plans = [_plan_region(where, r, n, job, opts, profile, launch) for r, n in shares]
        candidates = [p for plan in plans for p in plan.candidates]
        launch.estimate = estimate(candidates, opts.count)
        if opts.max_dollars is not None:  # the budget is a time: the workers stop by then
            launch.stop_at = stop_time(opts.max_dollars, opts.count, candidates, opts.max_price)
            launch.user_data = render_user_data(replace(boot, stop_at=launch.stop_at))
            for plan in plans:
                plan.template["UserData"] = _base64(launch.user_data)
                launch.requests[plan.region]["LaunchTemplateData"] = plan.template
        if not opts.dry_run:
            _launch_all(opened.store, where, plans, opts, launch)
    if not opts.dry_run and launch.granted == 0:
        warnings.warn(
            f"EC2 granted no instance ({'; '.join(launch.errors) or 'no reason given'}); the "
            "job waits in the queue: try other --type or --region, or --on-demand",
            stacklevel=2,
        )
    return launch


# Launching.


def _checked(opts: FleetOptions) -> FleetOptions:
    if isinstance(opts.count, bool) or not isinstance(opts.count, int) or opts.count < 1:
        raise ConfigError(f"count must be a whole number of instances >= 1, not {opts.count!r}")
    types = tuple(t.strip() for t in opts.types if t.strip())
    bad = [t for t in types if not _TYPE.fullmatch(t)]
    if not types or bad:
        raise ConfigError(
            f"instance types must look like 'c6i.large' (comma-separated), not {bad or types}"
        )
    if opts.max_price is not None and opts.max_price <= 0:
        raise ConfigError("max_price is dollars per instance-hour and must be > 0")
    if opts.requirements is not None and not Path(opts.requirements).is_file():
        raise ConfigError(f"requirements file {opts.requirements!r} does not exist")
    check_budget(opts.max_dollars)
    setup = (opts.setup,) if isinstance(opts.setup, str) else tuple(opts.setup)
    if not all(isinstance(c, str) and c.strip() for c in setup):
        raise ConfigError(f"setup takes shell commands, not {setup!r}")
    return replace(opts, types=types, regions=tuple(opts.regions), setup=setup)


def location(backend: str) -> S3Location:
    """The parts of an ``s3://`` backend URL; anything else is refused with what to do."""
    url = backend.url if hasattr(backend, "url") else backend
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ConfigError(
            f"cloud fleets need an s3:// backend (SQS + S3) that instances can reach, not "
            f"{url!r}; for workers on this machine use `cheerful worker` or `cheerful run`"
        )
    return parse_s3_url(url)


def _region(where: S3Location) -> str:
    region = where.region or AwsClients(profile=where.profile).client("sts").meta.region_name
    if not region:
        raise ConfigError("no region: add '?region=...' to the backend URL, or --region")
    return region


def _check_job(opened, job: str) -> None:
    if not opened.store.exists(layout.manifest(layout.validate_id(job))):
        raise ConfigError(f"no job {job!r} in {opened.url}: submit it first (cheerful submit)")


def _launch_id() -> str:
    return f"l-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def _split(count: int, regions: Iterable[str]) -> list[tuple[str, int]]:
    """``count`` shared out over ``regions`` as evenly as can be (none gets zero)."""
    regions = list(dict.fromkeys(regions))
    if len(regions) > count:
        raise ConfigError(f"{len(regions)} regions need a count of at least {len(regions)}")
    share, extra = divmod(count, len(regions))
    return [(r, share + (1 if i < extra else 0)) for i, r in enumerate(regions)]


def _bundle(store, opts: FleetOptions, *, dry: bool) -> tuple[str, str | None]:
    """Store cheerful's wheel (and the requirements) under their content hash."""
    from .wheel import build_wheel, wheel_digest

    with tempfile.TemporaryDirectory(prefix="cheerful-wheel-") as tmp:
        wheel = build_wheel(Path(tmp))
        wheel_key = layout.bundle_file(wheel_digest(wheel)[:16], wheel.name)
        if not dry and not store.exists(wheel_key):
            store.put(wheel_key, wheel.read_bytes())
    if opts.requirements is None:
        return wheel_key, None
    data = Path(opts.requirements).read_bytes()
    key = layout.bundle_file(hashlib.sha256(data).hexdigest()[:16], "requirements.txt")
    if not dry:
        store.put(key, data)
    return wheel_key, key


def _profile(where: S3Location, job: str | None, opts: FleetOptions, launch: Launch) -> str:
    if opts.instance_profile:
        return opts.instance_profile
    from . import iam

    if opts.dry_run:
        return iam.role_name(where, job)
    name, created = iam.ensure_instance_profile(where, job=job)
    launch.created += created
    return name


@dataclass
class _RegionPlan:
    """One region's share of a launch, checked before anything is launched anywhere."""

    region: str
    count: int
    template: dict
    request: dict
    subnets: dict[str, str]
    prices: dict[tuple[str, str], float]
    candidates: list[float]
    tags: list[dict]


def _plan_region(
    where: S3Location, region: str, count: int, job, opts: FleetOptions, profile: str, launch
) -> _RegionPlan:
    """Look up what a launch in ``region`` needs (architectures, images, subnets, prices)
    and build its launch template data and fleet request; launches nothing."""
    ec2 = ec2_client(where, region)
    arches = _architectures(ec2, opts.types, region)
    images = {arch: opts.image or _image(where, region, arch) for arch in set(arches.values())}
    subnets = _subnets(ec2, region)
    prices = spot_prices(ec2, opts.types, region) if opts.spot else {}
    tags = _tags(where, job, launch.id)
    overrides = []
    for kind in opts.types:
        for subnet, _ in subnets:
            override = {"InstanceType": kind, "SubnetId": subnet, "ImageId": images[arches[kind]]}
            if opts.max_price is not None and opts.spot:
                override["MaxPrice"] = f"{opts.max_price:.5f}"
            overrides.append(override)
    template = _template_data(launch.user_data, profile, images, tags)
    request = _fleet_request(count, opts, overrides, tags)
    launch.requests[region] = {"LaunchTemplateData": template, "CreateFleet": request}
    candidates = (
        [prices.get((t, z)) for t in opts.types for _, z in subnets]
        if opts.spot
        else [ON_DEMAND_USD.get(t) for t in opts.types]
    )
    return _RegionPlan(
        region,
        count,
        template,
        request,
        dict(subnets),
        prices,
        [p for p in candidates if p is not None],
        tags,
    )


def _launch_region(where: S3Location, plan: _RegionPlan, opts: FleetOptions, launch) -> None:
    """Make the launch template and the fleet of ``plan``; note the instances granted."""
    ec2, region = ec2_client(where, plan.region), plan.region
    name = f"cheerful-{launch.id}"
    with aws_errors(FleetError, "create a launch template", f"{name} in {region}"):
        made = ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData=plan.template,
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": plan.tags}],
        )
    template_id = made["LaunchTemplate"]["LaunchTemplateId"]
    launch.requests[region]["launch_template"] = template_id
    plan.request["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"] = {
        "LaunchTemplateId": template_id,
        "Version": "$Latest",
    }
    answer = _create_fleet(ec2, plan.request, f"{plan.count} instance(s) in {region}")
    launch.errors += [
        f"{region}: {e.get('ErrorCode')}: {e.get('ErrorMessage')}" for e in answer.get("Errors", [])
    ]
    for group in answer.get("Instances", []):
        chosen = group.get("LaunchTemplateAndOverrides", {}).get("Overrides", {})
        kind = group.get("InstanceType") or chosen.get("InstanceType")
        zone = plan.subnets.get(chosen.get("SubnetId"), "")
        price = spot_price(plan.prices, kind, zone) if opts.spot else ON_DEMAND_USD.get(kind)
        for instance_id in group.get("InstanceIds", []):
            launch.instances.append(
                {
                    "id": instance_id,
                    "region": region,
                    "type": kind,
                    "zone": zone,
                    "lifecycle": group.get("Lifecycle", "spot" if opts.spot else "on-demand"),
                    "price": price,
                }
            )


def _launch_all(store, where: S3Location, plans: list, opts: FleetOptions, launch) -> None:
    """Launch every region's share; a region that fails does not undo the others: what
    was launched is recorded (so ``status`` and ``down`` find it) before the first
    failure is raised, or noted as an error when some instances were granted."""
    failed: list[Exception] = []
    try:
        for plan in plans:
            try:
                _launch_region(where, plan, opts, launch)
            except FleetError as exc:
                failed.append(exc)
                launch.errors.append(f"{plan.region}: {exc}")
    finally:
        _record(store, where, launch, opts)
    if failed and launch.granted == 0:
        raise failed[0]


def _create_fleet(ec2, request: dict, what: str) -> dict:
    """Create the fleet, again while EC2 does not yet know a new instance profile (IAM
    changes take some seconds to reach EC2)."""
    for attempt in range(1, PROFILE_TRIES + 1):
        with aws_errors(FleetError, "create an EC2 fleet", what):
            try:
                answer = ec2.create_fleet(**request)
            except Exception as exc:
                if attempt == PROFILE_TRIES or not _profile_not_ready(str(exc)):
                    raise
                answer = None
        errors = " ".join(str(e.get("ErrorMessage")) for e in (answer or {}).get("Errors", []))
        if answer is not None and (answer.get("Instances") or not _profile_not_ready(errors)):
            return answer
        if attempt < PROFILE_TRIES:
            time.sleep(PROFILE_WAIT_S)
    return answer or {}


def _profile_not_ready(text: str) -> bool:
    return "instance profile" in text.lower() and "invalid" in text.lower()


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _template_data(user_data: str, profile: str, images: dict, tags: list[dict]) -> dict:
    return {
        "ImageId": sorted(images.values())[0],
        "UserData": _base64(user_data),
        "IamInstanceProfile": {"Name": profile},
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }


def _fleet_request(count: int, opts: FleetOptions, overrides: list, tags: list) -> dict:
    kind = "spot" if opts.spot else "on-demand"
    request: dict[str, Any] = {
        "Type": "instant",
        "TargetCapacitySpecification": {
            "TotalTargetCapacity": count,
            "DefaultTargetCapacityType": kind,
        },
        "LaunchTemplateConfigs": [
            {"LaunchTemplateSpecification": {"LaunchTemplateName": "(made at launch)"}},
        ],
        "TagSpecifications": [{"ResourceType": "fleet", "Tags": tags}],
    }
    request["LaunchTemplateConfigs"][0]["Overrides"] = overrides
    if opts.spot:
        request["SpotOptions"] = {"AllocationStrategy": "capacity-optimized"}
    else:
        request["OnDemandOptions"] = {"AllocationStrategy": "lowest-price"}
    return request


def _tags(where: S3Location, job: str | None, launch_id: str) -> list[dict]:
    return [
        {"Key": "Name", "Value": f"cheerful worker ({job or where.queue})"},
        {"Key": "cheerful:backend", "Value": backend_tag(where)},
        {"Key": "cheerful:job", "Value": job or "*"},
        {"Key": "cheerful:launch", "Value": launch_id},
    ]


def backend_tag(where: S3Location) -> str:
    """The value of the ``cheerful:backend`` tag: a short hash of the bucket and prefix."""
    return hashlib.sha256(f"{where.bucket}/{where.prefix}".encode()).hexdigest()[:16]


def _architectures(ec2, types: tuple[str, ...], region: str) -> dict[str, str]:
    with aws_errors(FleetError, "describe instance types", f"{list(types)} in {region}"):
        try:
            rows = ec2.describe_instance_types(InstanceTypes=list(types))["InstanceTypes"]
        except Exception as exc:
            if error_code(exc) == "InvalidInstanceType":
                said = exc.response["Error"].get("Message", "")  # type: ignore[attr-defined]
                raise ConfigError(
                    f"instance types not offered in {region}: {said}; check --type"
                ) from None
            raise
    found = {r["InstanceType"]: r["ProcessorInfo"]["SupportedArchitectures"] for r in rows}
    missing = [t for t in types if t not in found]
    if missing:
        raise ConfigError(f"instance type(s) {missing} are not offered in {region}; check --type")
    return {t: ("arm64" if "arm64" in found[t] else "x86_64") for t in types}


def _image(where: S3Location, region: str, arch: str) -> str:
    """The region's current Ubuntu LTS image (else Amazon Linux 2023), from SSM."""
    ssm = AwsClients(region=region, profile=where.profile).client("ssm")
    ubuntu, amazon = _ARCH_NAMES[arch]
    names = [_UBUNTU.format(arch=ubuntu), _AMAZON.format(arch=amazon)]
    for name in names:
        with aws_errors(FleetError, "look up the default image", f"{name} in {region}"):
            try:
                return ssm.get_parameter(Name=name)["Parameter"]["Value"]
            except Exception as exc:
                if error_code(exc) != "ParameterNotFound":
                    raise
    raise ConfigError(f"no default {arch} image found in {region} ({names}); pass --image AMI")


def _subnets(ec2, region: str) -> list[tuple[str, str]]:
    with aws_errors(FleetError, "find the default subnets", region):
        rows = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    subnets = sorted((s["SubnetId"], s["AvailabilityZone"]) for s in rows["Subnets"])
    if not subnets:
        raise ConfigError(
            f"{region} has no default VPC subnets: create the default VPC "
            "(aws ec2 create-default-vpc) or launch in another region"
        )
    return subnets


def ec2_client(where: S3Location, region: str) -> Any:
    """The EC2 client of ``region`` (with the backend's profile)."""
    return AwsClients(region=region, profile=where.profile).client("ec2")


def _record(store, where: S3Location, launch: Launch, opts: FleetOptions) -> None:
    regions: dict[str, dict] = {}
    for region, part in launch.requests.items():
        regions[region] = {
            "launch_template": part.get("launch_template"),
            "instances": [i for i in launch.instances if i["region"] == region],
        }
    record = {
        "id": launch.id,
        "job": launch.job,
        "created": time.time(),
        "requested": launch.requested,
        "spot": opts.spot,
        "types": list(opts.types),
        "regions": regions,
        "errors": launch.errors,
        "max_dollars": opts.max_dollars,
        "stop_at": launch.stop_at,
    }
    store.put(layout.launch(launch.id), json.dumps(record, indent=1).encode())
