"""The retail metrics of one bucket, from the sums the rollups give (pure: no I/O).

| metric | definition |
|---|---|
| `entries`, `exits` | people counted in and out |
| `visitors` | per site: its entries, its exits, or their mean (sites.visitors); a group adds its sites' |
| `occupancy` | the peak: occupancy sensors' zones added up, else the estimated balance (collector/balance.py) |
| `transactions` | sales minus voids (a void cancels a sale; a refund is a return, not a transaction) |
| `revenue` | per currency, in minor units: sales - refunds - voids; currencies are never added together |
| `conversion` | transactions / visitors |
| `atv` | per currency: revenue / that currency's transactions (average transaction value) |
| `sales_per_visitor` | per currency: revenue / visitors |
| `items_per_transaction` | items sold / transactions |
| `completeness` | reported / expected sensor-quarters (share of the expected sensors that reported, per quarter) |
| `gap` | whether an outage (an agent's buffer gap, a sensor offline) touches the bucket |
| `complete` | sensors were expected, all reported, and no outage touches it |

A ratio whose denominator is zero is null. Ratios are rounded to 6 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

METRICS = (
    "entries", "exits", "visitors", "occupancy", "transactions", "revenue", "conversion", "atv",
    "sales_per_visitor", "items_per_transaction",
)
COMPLETENESS_FIELDS = ("completeness", "gap", "complete")
PER_CURRENCY = frozenset({"revenue", "atv", "sales_per_visitor"})
# What each metric needs from the rollups.
NEEDS_COUNTS = frozenset({"entries", "exits", "visitors", "conversion", "sales_per_visitor"})
NEEDS_SALES = frozenset({"transactions", "revenue", "conversion", "atv", "sales_per_visitor", "items_per_transaction"})
NEEDS_OCCUPANCY = frozenset({"occupancy"})
_DERIVED = frozenset({"revenue", "conversion", "atv", "sales_per_visitor", "items_per_transaction"})
SALES_FIELDS = 7  # sales_count, sales_amount, refunds_count, refunds_amount, voids_count, voids_amount, items


@dataclass(slots=True)
class Totals:
    """Sums for one bucket (or one range). `visitors2` is twice the visitors, exact for the `mean` definition."""

    entries: int = 0
    exits: int = 0
    visitors2: int = 0
    occupancy: int | None = None
    sales: dict[str, list[int]] = field(default_factory=dict)
    reported: int = 0
    expected: int = 0
    gap: bool = False

    def add_sales(self, currency: str, values: Any) -> None:
        """Add (sales_count, sales_amount, refunds_count, refunds_amount, voids_count, voids_amount, items)."""
        row = self.sales.setdefault(currency, [0] * SALES_FIELDS)
        for i, value in enumerate(values):
            row[i] += int(value)

    def add_occupancy(self, value: int) -> None:
        """Keep the peak."""
        self.occupancy = value if self.occupancy is None else max(self.occupancy, value)

    def merge(self, other: Totals) -> None:
        """Fold another bucket's totals into this range's (sums add, occupancy keeps the peak, gaps spread)."""
        self.entries += other.entries
        self.exits += other.exits
        self.visitors2 += other.visitors2
        if other.occupancy is not None:
            self.add_occupancy(other.occupancy)
        for currency, values in other.sales.items():
            self.add_sales(currency, values)
        self.reported += other.reported
        self.expected += other.expected
        self.gap = self.gap or other.gap


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def _number(value2: int) -> int | float:
    """Half of `value2`: an int when whole."""
    return value2 // 2 if value2 % 2 == 0 else value2 / 2


def derive(totals: Totals, metrics: tuple[str, ...], currencies: list[str]) -> dict[str, Any]:
    """The requested metrics (and the completeness fields) of one bucket; per-currency metrics list every currency."""
    visitors2 = totals.visitors2
    if totals.sales:
        by = {c: v[0] - v[4] for c, v in totals.sales.items()}
        revenue = {c: v[1] - v[3] - v[5] for c, v in totals.sales.items()}
        transactions = sum(by.values())
        items = sum(v[6] for v in totals.sales.values())
    else:
        by, revenue, transactions, items = {}, {}, 0, 0
    every: dict[str, Any] = {
        "entries": totals.entries,
        "exits": totals.exits,
        "visitors": _number(visitors2),
        "occupancy": totals.occupancy,
        "transactions": transactions,
    }
    if not _DERIVED.isdisjoint(metrics):
        every["revenue"] = {c: revenue.get(c, 0) for c in currencies}
        every["conversion"] = _ratio(2 * transactions, visitors2)
        every["atv"] = {c: _ratio(revenue.get(c, 0), by.get(c, 0)) for c in currencies}
        every["sales_per_visitor"] = {c: _ratio(2 * revenue.get(c, 0), visitors2) for c in currencies}
        every["items_per_transaction"] = _ratio(items, transactions)
    values = {metric: every[metric] for metric in metrics}
    share = min(1.0, totals.reported / totals.expected) if totals.expected else None
    values["completeness"] = round(share, 6) if share is not None else None
    values["gap"] = totals.gap
    values["complete"] = share == 1.0 and not totals.gap
    return values

