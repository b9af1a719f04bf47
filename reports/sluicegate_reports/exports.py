"""Provider usage and cost exports: the OpenAI and Anthropic organization exports, parsed. Pure.

Reads the Admin API JSON pages and the consoles' CSV from bytes it is handed; reads no files.
The accepted fields are listed in docs/reports.md.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sluicegate_contract.money import MICRO_USD

Provider = Literal["openai", "anthropic"]
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


class ExportError(ValueError):
    """The export cannot be read; the message names the file and what is missing."""


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One export line item (or a sum of them), reduced to what is compared. None: not reported."""

    day: date
    model: str
    cost_micro_usd: int | None = None
    input_tokens: int | None = None  # every input token, cache reads and writes included
    output_tokens: int | None = None
    cached_tokens: int | None = None
    requests: int | None = None
    names: tuple[str, ...] = ()  # summed rows: the model names that went into them


@dataclass(frozen=True, slots=True)
class Export:
    provider: Provider
    kind: str
    rows: tuple[ExportRow, ...]
    days: frozenset[date]  # the days the export covers, empty buckets included


def model_key(name: str) -> str:
    """The name both sides are matched on: lower case, ``.``/spaces → ``-``, no date or ``-latest`` suffix.

    ``gpt-4o-2024-08-06`` → ``gpt-4o``; ``claude-3-5-sonnet-20241022`` and the console's
    ``Claude 3.5 Sonnet 2024-10-22`` → ``claude-3-5-sonnet``.
    """
    text = name.strip().lower().removeprefix("models/")
    text = re.sub(r"[\s._]+", "-", text)
    return _DATE_SUFFIX.sub("", text)


def _money(value: object, where: str, cents: bool = False) -> int:
    try:
        amount = Decimal(str(value).replace(",", "").strip() or "0")
    except InvalidOperation:
        raise ExportError(f"{where}: {value!r} is not an amount") from None
    if cents:
        amount /= 100
    return int((amount * MICRO_USD).to_integral_value())


def _count(value: object, where: str) -> int:
    if value is None or value == "":
        return 0
    try:
        return int(Decimal(str(value).replace(",", "").strip()))
    except InvalidOperation:
        raise ExportError(f"{where}: {value!r} is not a token count") from None


def _day(value: object, where: str) -> date:
    text = str(value).strip()
    try:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC).date()
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).date()
    except (ValueError, OverflowError):
        raise ExportError(f"{where}: {value!r} is not a date") from None


def _covered(start: object, end: object, where: str) -> set[date]:
    first = _day(start, where)
    if end is None:
        return {first}
    last_instant = _day(end, where)
    # a bucket ends at midnight, exclusive: the day before its end is its last day
    last = last_instant - timedelta(days=1) if last_instant > first else first
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


def _check_currency(value: object, where: str) -> None:
    if value not in (None, "") and str(value).lower() != "usd":
        raise ExportError(f"{where}: currency {value!r}; only USD exports can be reconciled")


# -- JSON (the Admin APIs) ---------------------------------------------------------------------


def _openai_result(result: Mapping[str, Any], day: date, where: str) -> ExportRow:
    if "amount" in result:
        amount = result.get("amount") or {}
        _check_currency(amount.get("currency"), where)
        item = result.get("line_item")
        if not item:
            raise ExportError(f"{where}: a cost without line_item; export it with group_by=line_item")
        item_model = str(item).split(",", 1)[0].strip()  # "gpt-4o-2024-08-06, input"
        return ExportRow(day, item_model, cost_micro_usd=_money(amount.get("value"), where))
    if "input_tokens" in result or "output_tokens" in result:
        model = result.get("model")
        if not model:
            raise ExportError(f"{where}: usage without model; export it with group_by=model")
        return ExportRow(
            day,
            str(model),
            input_tokens=_count(result.get("input_tokens"), where),
            output_tokens=_count(result.get("output_tokens"), where),
            cached_tokens=_count(result.get("input_cached_tokens"), where),
            requests=_count(result.get("num_model_requests"), where),
        )
    raise ExportError(f"{where}: neither a costs result (amount) nor a usage result (input_tokens)")


def _anthropic_result(result: Mapping[str, Any], day: date, where: str) -> ExportRow:
    if "amount" in result:
        _check_currency(result.get("currency"), where)
        model, cost_type = result.get("model"), result.get("cost_type")
        if not model and not cost_type:
            raise ExportError(f"{where}: a cost without model; export it with group_by[]=description")
        name = str(model) if model else f"({cost_type})"
        return ExportRow(day, name, cost_micro_usd=_money(result.get("amount"), where, cents=True))
    if "uncached_input_tokens" in result or "output_tokens" in result:
        model = result.get("model")
        if not model:
            raise ExportError(f"{where}: usage without model; export it with group_by[]=model")
        creation = result.get("cache_creation") or {}
        written = _count(creation.get("ephemeral_5m_input_tokens"), where) + _count(
            creation.get("ephemeral_1h_input_tokens"), where
        )
        cached = _count(result.get("cache_read_input_tokens"), where)
        uncached = _count(result.get("uncached_input_tokens"), where)
        return ExportRow(
            day,
            str(model),
            input_tokens=uncached + cached + written,
            output_tokens=_count(result.get("output_tokens"), where),
            cached_tokens=cached,
        )
    raise ExportError(f"{where}: neither a cost result (amount) nor a usage result (uncached_input_tokens)")


def _json_buckets(doc: Any, name: str) -> Iterator[Mapping[str, Any]]:
    pages = doc if isinstance(doc, list) else [doc]
    for page in pages:
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise ExportError(f"{name}: not an organization usage/cost page (no 'data' list)")
        for bucket in page["data"]:
            if not isinstance(bucket, dict):
                raise ExportError(f"{name}: a bucket in 'data' is not an object")
            yield bucket


def _parse_json(doc: Any, name: str) -> Export:
    rows: list[ExportRow] = []
    days: set[date] = set()
    provider: Provider | None = None
    kinds: set[str] = set()
    for number, bucket in enumerate(_json_buckets(doc, name), 1):
        where = f"{name}: bucket {number}"
        if "start_time" in bucket:
            provider = "openai"
            start, end = bucket["start_time"], bucket.get("end_time")
        elif "starting_at" in bucket:
            provider = "anthropic"
            start, end = bucket["starting_at"], bucket.get("ending_at")
        else:
            raise ExportError(f"{where}: no start_time (OpenAI) or starting_at (Anthropic)")
        days |= _covered(start, end, where)
        day = _day(start, where)
        for result in bucket.get("results", bucket.get("result")) or []:
            row = (_openai_result if provider == "openai" else _anthropic_result)(result, day, where)
            kinds.add("costs" if row.cost_micro_usd is not None else "usage")
            rows.append(row)
    if provider is None:
        raise ExportError(f"{name}: the export holds no buckets")
    return Export(
        provider, f"{provider} {'+'.join(sorted(kinds)) or 'empty'} (JSON)", tuple(rows), frozenset(days)
    )


# -- CSV (the consoles' exports) ---------------------------------------------------------------


def _anthropic_usage_csv(rec: dict[str, str]) -> dict[str, Any]:
    """A console usage row in the Admin API's field names."""
    written_5m = _count(rec.get("usage_input_tokens_cache_write_5m"), "") + _count(
        rec.get("usage_input_tokens_cache_write"),
        "",  # the older single column
    )
    return {
        "model": rec.get("model_version"),
        "uncached_input_tokens": rec.get("usage_input_tokens_no_cache"),
        "cache_read_input_tokens": rec.get("usage_input_tokens_cache_read"),
        "cache_creation": {
            "ephemeral_5m_input_tokens": written_5m,
            "ephemeral_1h_input_tokens": rec.get("usage_input_tokens_cache_write_1h"),
        },
        "output_tokens": rec.get("usage_output_tokens"),
    }


def _parse_csv(text: str, name: str) -> Export:
    reader = csv.DictReader(io.StringIO(text))
    header = {(h or "").strip().lower() for h in reader.fieldnames or []}
    records = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]
    rows: list[ExportRow] = []
    provider: Provider
    if {"usage_date_utc", "model_version", "usage_output_tokens"} <= header:
        provider, kind = "anthropic", "anthropic usage (console CSV)"
        for line, rec in enumerate(records, 2):
            day = _day(rec["usage_date_utc"], f"{name}:{line}")
            rows.append(_anthropic_result(_anthropic_usage_csv(rec), day, f"{name}:{line}"))
    elif {"usage_date_utc", "model", "cost_usd"} <= header:
        provider, kind = "anthropic", "anthropic costs (console CSV)"
        for line, rec in enumerate(records, 2):
            where = f"{name}:{line}"
            _check_currency(rec.get("currency"), where)
            model = rec["model"] or f"({rec.get('cost_type') or 'other'})"
            rows.append(ExportRow(_day(rec["usage_date_utc"], where), model, _money(rec["cost_usd"], where)))
    elif {"start_time", "amount_value", "line_item"} <= header:
        provider, kind = "openai", "openai costs (console CSV)"
        for line, rec in enumerate(records, 2):
            amount = {"value": rec["amount_value"], "currency": rec.get("amount_currency")}
            result = {"amount": amount, "line_item": rec["line_item"] or "(no line item)"}
            rows.append(_openai_result(result, _day(rec["start_time"], name), f"{name}:{line}"))
    elif {"start_time", "model", "input_tokens", "output_tokens"} <= header:
        provider, kind = "openai", "openai usage (CSV)"
        for line, rec in enumerate(records, 2):
            rows.append(_openai_result(rec, _day(rec["start_time"], f"{name}:{line}"), f"{name}:{line}"))
    else:
        raise ExportError(
            f"{name}: unrecognised CSV columns ({', '.join(sorted(header)) or 'none'}); "
            "see docs/reports.md for the OpenAI and Anthropic exports accepted"
        )
    return Export(provider, kind, tuple(rows), frozenset(r.day for r in rows))


def parse_export(name: str, data: bytes) -> Export:
    """Recognise and parse one export (JSON page(s) or console CSV) by its content."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExportError(f"{name}: not UTF-8 text") from None
    if text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExportError(f"{name}: not valid JSON ({exc})") from None
        return _parse_json(doc, name)
    return _parse_csv(text, name)


def merge_exports(exports: Sequence[Export]) -> Export:
    """Several exports of one provider (e.g. costs and usage) as one."""
    providers = {e.provider for e in exports}
    if len(providers) != 1:
        raise ExportError(
            f"exports from different providers ({', '.join(sorted(providers))}); reconcile one at a time"
        )
    rows = tuple(row for export in exports for row in export.rows)
    days = frozenset().union(*(export.days for export in exports))
    return Export(exports[0].provider, "; ".join(e.kind for e in exports), rows, days)
