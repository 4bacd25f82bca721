"""What a fleet costs: hourly prices before launch, dollars spent so far for a job.

Spot prices come from EC2's spot price history (the latest price of each instance type in
each zone). On-demand prices are not in the EC2 API; :data:`ON_DEMAND_USD` holds list
prices of common types (us-east-1, Linux) and other types show no price. Money spent is
instance-seconds times the hourly price recorded at launch: an estimate, not the bill.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cheerful.errors import FleetError

from ..aws import aws_errors

__all__ = [
    "ON_DEMAND_USD",
    "Estimate",
    "dollars",
    "estimate",
    "money",
    "spot_price",
    "spot_prices",
]

ON_DEMAND_USD = {
    "c5.large": 0.085,
    "c5.xlarge": 0.17,
    "c5.2xlarge": 0.34,
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c6i.2xlarge": 0.34,
    "c7i.large": 0.08925,
    "c7g.large": 0.0725,
    "m5.large": 0.096,
    "m6i.large": 0.096,
    "m6i.xlarge": 0.192,
    "m7i.large": 0.1008,
    "r6i.large": 0.126,
    "t3.medium": 0.0416,
}
"""On-demand list prices in US dollars per hour (us-east-1, Linux), for estimates only."""


@dataclass(frozen=True)
class Estimate:
    """The hourly price of ``count`` instances: the typical price of one, and its range."""

    count: int
    per_instance: float | None
    low: float | None
    high: float | None

    @property
    def per_hour(self) -> float | None:
        """Dollars per hour for the whole fleet (None: no price known)."""
        return None if self.per_instance is None else self.per_instance * self.count

    def __str__(self) -> str:
        if self.per_instance is None:
            return f"{self.count} instance(s); no price known for these types"
        return (
            f"{self.count} instance(s) x {money(self.per_instance)}/h = "
            f"{money(self.per_hour)}/h ({money(self.low)} to {money(self.high)} per "
            "instance-hour)"
        )


def spot_prices(ec2: Any, types: Iterable[str], region: str) -> dict[tuple[str, str], float]:
    """The latest Linux spot price of each (instance type, zone) in ``region``: asked as of
    now (EC2 then answers the price in force, per type and zone), or from the whole
    history where a service answers nothing for that (moto, some compatible clouds)."""
    types = list(types)
    now = _latest(ec2, types, region, StartTime=datetime.now(timezone.utc))
    return now or _latest(ec2, types, region)


def _latest(ec2: Any, types: list[str], region: str, **since: Any) -> dict:
    latest: dict[tuple[str, str], tuple[Any, float]] = {}
    with aws_errors(FleetError, "read the spot price history", region):
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=types,
            ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
            PaginationConfig={"MaxItems": 1000},
            **since,
        )
        for page in pages:
            for row in page.get("SpotPriceHistory", []):
                key = (row["InstanceType"], row["AvailabilityZone"])
                seen = latest.get(key)
                if seen is None or row["Timestamp"] > seen[0]:
                    latest[key] = (row["Timestamp"], float(row["SpotPrice"]))
    return {key: price for key, (_, price) in latest.items()}


def spot_price(prices: dict[tuple[str, str], float], kind: str, zone: str) -> float | None:
    """The spot price of ``kind`` in ``zone``; where the history has none for that zone,
    the median of the type's prices in the region's other zones (None: no price at all)."""
    if (kind, zone) in prices:
        return prices[(kind, zone)]
    elsewhere = [price for (k, _), price in prices.items() if k == kind]
    return statistics.median(elsewhere) if elsewhere else None


def estimate(prices: Iterable[float], count: int) -> Estimate:
    """An :class:`Estimate` for ``count`` instances from the candidate hourly prices."""
    known = sorted(p for p in prices if p is not None)
    if not known:
        return Estimate(count, None, None, None)
    return Estimate(count, statistics.median(known), known[0], known[-1])


def money(amount: float) -> str:
    """``amount`` dollars for people: cents from a dime up, else up to 6 decimals (a spot
    price of $0.0123/h stays readable, never in scientific notation)."""
    if amount >= 0.1:
        return f"${amount:,.2f}"
    return "$" + (f"{amount:.6f}".rstrip("0").rstrip(".") or "0")


def dollars(seconds: float, per_hour: float | None) -> float:
    """What ``seconds`` of one instance at ``per_hour`` cost (0 with no price)."""
    return 0.0 if per_hour is None else max(0.0, seconds) / 3600.0 * per_hour
