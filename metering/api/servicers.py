"""The gRPC servicers: convert messages, call the service layer off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc

from metering.api import convert
from metering.api.auth import new_account_tenant
from metering.api.errors import mapped, mapped_stream, record_error
from metering.domain.errors import FieldViolation, InvalidArgument, MeteringError, Violations
from metering.domain.exports import RecordView
from metering.domain.missing import DEFAULT_POLICY
from metering.domain.money import Money
from metering.service import commands
from metering.service.exports import (
    SUMMARY_GROUP_BY,
    ExportQuery,
    ExportRun,
    ReviewQuery,
    UsageExports,
)
from metering.service.group_commit import GroupCommitter
from metering.service.handlers import Metering, check_batch_size
from metering.service.prices import PriceAdmin, import_prices
from metering.service.reconcile import ReconcileOptions, Reconciler
from metering.v1 import admin_service_pb2 as admin_pb
from metering.v1 import admin_service_pb2_grpc as admin_grpc
from metering.v1 import metering_service_pb2 as pb
from metering.v1 import metering_service_pb2_grpc as pb_grpc
from metering.v1 import prices_pb2, types_pb2

_T = TypeVar("_T")


class _Blocking:
    """Runs the (synchronous, database-bound) service layer on a bounded thread pool."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor

    async def run(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)


def _record_command(request: pb.RecordUsageRequest) -> commands.RecordUsage:
    v = Violations()
    event_time = (
        convert.time_us_from_pb(v, "event_time", request.event_time)
        if request.HasField("event_time")
        else None
    )
    response_format = convert.api_format_name(v, request.response_format)
    request_format = convert.api_format_name(v, request.request_format, "request_format")
    if request_format in ("WORKERS_AI", "DIFY"):
        v.add("request_format", f"{request_format} request bodies are not counted")
    v.raise_if_any()
    return commands.RecordUsage(
        account_id=request.account_id,
        request_id=request.request_id,
        model=request.model,
        provider=request.provider,
        usage=convert.usage_from_pb(request.usage) if request.HasField("usage") else None,
        api_key_id=request.api_key_id,
        service=request.service,
        event_time_us=event_time,
        streamed=request.streamed,
        labels=dict(request.labels),
        batch=request.batch,
        response_json=request.response_json,
        response_format=response_format,
        reservation_id=request.reservation_id,
        request_json=request.request_json,
        request_format=request_format,
        prompt_text=request.prompt_text,
        completion_text=request.completion_text,
    )


def _record_response(result: commands.RecordResult) -> pb.RecordUsageResponse:
    return pb.RecordUsageResponse(
        cost=convert.money_pb(Money(result.currency_code, result.cost_nanos)),
        balance=convert.money_pb(Money(result.currency_code, result.balance_nanos)),
        replayed=result.replayed,
        usage_source=convert.source_pb(result.usage_source),
        price_id=result.price_id,
        price_version=result.price_version,
        balance_exhausted=result.balance_exhausted,
        request_credits_charged=result.request_credits_charged,
        request_credits=result.request_credits,
        record_id=result.record_id,
        unpriced=result.unpriced,
        usage=convert.usage_pb(result.usage) if result.usage is not None else None,
        reservation_held=(
            convert.money_pb(Money(result.currency_code, result.reservation_held_nanos))
            if result.reservation_held_nanos
            else None
        ),
        reservation_exceeded=result.reservation_exceeded,
        budget_id=result.budget_id,
        budget_headroom=result.budget_headroom,
        budget_warnings=list(result.budget_warnings),
        missing_usage_fallback=convert.fallback_pb(result.missing_fallback),
    )


def _prefixed(exc: MeteringError, prefix: str) -> MeteringError:
    """Field paths of a batch record's violations, named within the batch."""
    if isinstance(exc, InvalidArgument):
        return InvalidArgument(
            [FieldViolation(f"{prefix}.{v.field}", v.description) for v in exc.violations],
            exc.reason,
        )
    return exc


class MeteringServicer(pb_grpc.MeteringServiceServicer, _Blocking):
    def __init__(
        self, metering: Metering, committer: GroupCommitter, executor: ThreadPoolExecutor
    ) -> None:
        _Blocking.__init__(self, executor)
        self._metering = metering
        self._committer = committer

    @mapped
    async def RecordUsage(
        self, request: pb.RecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordUsageResponse:
        result = await self._committer.record(_record_command(request))
        return _record_response(result)

    @mapped
    async def RecordUsageBatch(
        self, request: pb.RecordUsageBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordUsageBatchResponse:
        cmds: list[commands.RecordUsage | MeteringError] = []
        for item in request.records:
            try:
                cmds.append(_record_command(item))
            except MeteringError as exc:
                cmds.append(exc)
        check_batch_size(len(cmds))
        outcomes = await self._committer.record_many(cmds)
        results = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, MeteringError):
                results.append(
                    pb.RecordUsageResult(
                        error=record_error(_prefixed(outcome, f"records[{index}]"))
                    )
                )
            else:
                results.append(pb.RecordUsageResult(response=_record_response(outcome)))
        return pb.RecordUsageBatchResponse(results=results)

    @mapped
    async def EstimateTokens(
        self, request: pb.EstimateTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.EstimateTokensResponse:
        v = Violations()
        request_format = convert.api_format_name(v, request.request_format, "request_format")
        if request_format in ("WORKERS_AI", "DIFY"):
            v.add("request_format", f"{request_format} request bodies are not counted")
        v.raise_if_any()
        cmd = commands.EstimateTokens(
            model=request.model,
            provider=request.provider,
            text=request.text,
            completion_text=request.completion_text,
            max_output_tokens=request.max_output_tokens,
            account_id=request.account_id,
            request_json=request.request_json,
            request_format=request_format,
        )
        result = await self.run(lambda: self._metering.estimate_tokens(cmd))
        response = pb.EstimateTokensResponse(
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            method=pb.ESTIMATE_METHOD_EXACT if result.exact else pb.ESTIMATE_METHOD_APPROXIMATE,
            tokenizer=result.tokenizer,
            price_id=result.price_id,
            price_version=result.price_version,
            request_format=convert.API_FORMATS_BY_NAME.get(
                result.request_format, types_pb2.API_FORMAT_UNSPECIFIED
            ),
            max_output_tokens=result.max_output_tokens,
        )
        if result.estimated_cost_nanos is not None:
            response.estimated_cost.CopyFrom(
                convert.money_pb(Money(result.currency_code, result.estimated_cost_nanos))
            )
        if result.worst_case_cost_nanos is not None:
            response.worst_case_cost.CopyFrom(
                convert.money_pb(Money(result.currency_code, result.worst_case_cost_nanos))
            )
        return response

    @mapped
    async def AuthorizeUsage(
        self, request: pb.AuthorizeUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuthorizeUsageResponse:
        v = Violations()
        amount = (
            convert.money_from_pb(v, "amount", request.amount)
            if request.HasField("amount")
            else None
        )
        request_format = convert.api_format_name(v, request.request_format, "request_format")
        ttl_us = None
        if request.HasField("ttl"):
            if request.ttl.nanos < 0 or request.ttl.seconds < 0:
                v.add("ttl", "ttl must be positive")
            ttl_us = request.ttl.seconds * 1_000_000 + request.ttl.nanos // 1000
        v.raise_if_any()
        cmd = commands.AuthorizeUsage(
            account_id=request.account_id,
            request_id=request.request_id,
            model=request.model,
            provider=request.provider,
            amount_nanos=amount.nanos if amount is not None else None,
            currency_code=amount.currency_code if amount is not None else "",
            request_json=request.request_json,
            request_format=request_format,
            input_tokens=request.input_tokens,
            max_output_tokens=request.max_output_tokens,
            ttl_us=ttl_us,
            api_key_id=request.api_key_id,
        )
        result = await self.run(lambda: self._metering.authorize_usage(cmd))
        currency = result.currency_code
        return pb.AuthorizeUsageResponse(
            decision=(
                pb.AUTHORIZATION_DECISION_ALLOWED
                if result.allowed
                else pb.AUTHORIZATION_DECISION_DENIED
            ),
            reservation_id=result.reservation_id,
            deny_reason=result.deny_reason,
            held=convert.money_pb(Money(currency, result.held_nanos)),
            held_request_credits=result.held_credits,
            available=convert.money_pb(Money(currency, result.available_nanos)),
            available_request_credits=result.available_credits,
            expire_time=(
                convert.timestamp_pb(result.expire_time_us) if result.expire_time_us else None
            ),
            replayed=result.replayed,
            budget_id=result.budget_id,
            budget_headroom=result.budget_headroom,
            budget_warnings=list(result.budget_warnings),
        )

    @mapped
    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseReservationResponse:
        result = await self.run(
            lambda: self._metering.release_reservation(request.account_id, request.reservation_id)
        )
        return pb.ReleaseReservationResponse(
            state=convert.reservation_state_pb(result.state),
            available=convert.money_pb(Money(result.currency_code, result.available_nanos)),
        )

    @mapped
    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalanceResponse:
        result = await self.run(lambda: self._metering.get_balance(request.account_id))
        currency = result.currency_code
        return pb.GetBalanceResponse(
            balance=convert.money_pb(Money(currency, result.balance_nanos)),
            held=convert.money_pb(Money(currency, result.held_nanos)),
            available=convert.money_pb(Money(currency, result.available_nanos)),
            request_credits=result.request_credits,
            currency_code=currency,
            billing_mode=convert.mode_pb(result.billing_mode),
            allow_negative_balance=result.allow_negative_balance,
            balance_exhausted=result.balance_exhausted,
        )

    @mapped
    async def UsageSummary(
        self, request: pb.UsageSummaryRequest, context: grpc.aio.ServicerContext
    ) -> pb.UsageSummaryResponse:
        v = Violations()
        start = (
            convert.time_us_from_pb(v, "start_time", request.start_time)
            if request.HasField("start_time")
            else None
        )
        end = (
            convert.time_us_from_pb(v, "end_time", request.end_time)
            if request.HasField("end_time")
            else None
        )
        granularity = convert.granularity_from_pb(v, request.granularity)
        group_by = convert.group_keys_from_pb(v, list(request.group_by))
        sources = convert.sources_from_pb(v, "usage_sources", list(request.usage_sources))
        v.raise_if_any()
        query = commands.SummaryQuery(
            start_us=start,
            end_us=end,
            account_id=request.account_id,
            granularity=granularity,
            time_zone=request.time_zone,
            group_by=group_by,
            page_size=request.page_size,
            page_token=request.page_token,
            currency_code=request.currency_code,
            usage_sources=sources,
        )
        page = await self.run(lambda: self._metering.usage_summary(query))
        return pb.UsageSummaryResponse(
            rows=[convert.summary_row_pb(row, group_by) for row in page.rows],
            totals=convert.summary_row_pb(page.totals, ()),
            next_page_token=page.next_page_token,
        )

    @mapped
    async def CorrectUsage(
        self, request: pb.CorrectUsageRequest, context: grpc.aio.ServicerContext
    ) -> pb.CorrectUsageResponse:
        v = Violations()
        response_format = convert.api_format_name(v, request.response_format)
        cost = convert.money_from_pb(v, "cost", request.cost) if request.HasField("cost") else None
        v.raise_if_any()
        cmd = commands.CorrectUsage(
            account_id=request.account_id,
            request_id=request.request_id,
            usage=convert.usage_from_pb(request.usage) if request.HasField("usage") else None,
            response_json=request.response_json,
            response_format=response_format,
            cost_nanos=cost.nanos if cost is not None else None,
            cost_currency_code=cost.currency_code if cost is not None else "",
            correction_id=request.correction_id,
            reason=request.reason,
        )
        result = await self.run(lambda: self._metering.corrections.correct_usage(cmd))
        currency = result.currency_code
        return pb.CorrectUsageResponse(
            corrects_record_id=result.corrects_record_id,
            usage=convert.usage_pb(result.usage),
            cost=convert.money_pb(Money(currency, result.cost_nanos)),
            usage_difference=convert.usage_pb(result.usage_difference),
            cost_difference=convert.money_pb(Money(currency, result.cost_difference_nanos)),
            balance=convert.money_pb(Money(currency, result.balance_nanos)),
            replayed=result.replayed,
            transaction_id=result.transaction_id,
        )


def _range(
    v: Violations, request: admin_pb.ExportUsageRequest | admin_pb.ListReviewRecordsRequest
) -> tuple[int | None, int | None]:
    start = (
        convert.time_us_from_pb(v, "start_time", request.start_time)
        if request.HasField("start_time")
        else None
    )
    end = (
        convert.time_us_from_pb(v, "end_time", request.end_time)
        if request.HasField("end_time")
        else None
    )
    return start, end


def _next_messages(run: ExportRun) -> list[admin_pb.ExportUsageResponse] | None:
    """The next page of an export as messages (read and converted off the event loop);
    None when the export is done."""
    page = next(run.pages, None)
    if page is None:
        return None
    messages = [
        admin_pb.ExportUsageResponse(
            record=convert.record_view_pb(view), resume_token=run.resume_token(view)
        )
        for view in page.records
    ]
    messages += [
        admin_pb.ExportUsageResponse(row=convert.export_row_pb(row, SUMMARY_GROUP_BY))
        for row in page.rows
    ]
    return messages


class MeteringAdminServicer(admin_grpc.MeteringAdminServiceServicer, _Blocking):
    def __init__(
        self,
        metering: Metering,
        prices: PriceAdmin,
        executor: ThreadPoolExecutor,
        exports: UsageExports,
    ) -> None:
        _Blocking.__init__(self, executor)
        self._metering = metering
        self._prices = prices
        self._reconciler = Reconciler(metering)
        self._exports = exports

    @mapped
    async def ListReviewRecords(
        self, request: admin_pb.ListReviewRecordsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.ListReviewRecordsResponse:
        v = Violations()
        start, end = _range(v, request)
        v.raise_if_any()
        query = ReviewQuery(
            start_us=start,
            end_us=end,
            account_id=request.account_id,
            estimated_share_min_bps=request.estimated_share_min_basis_points,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        records, token = await self.run(lambda: self._exports.review_records(query))
        return admin_pb.ListReviewRecordsResponse(
            records=[convert.record_view_pb(RecordView(record)) for record in records],
            next_page_token=token,
        )

    @mapped_stream
    async def ExportUsage(
        self, request: admin_pb.ExportUsageRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[admin_pb.ExportUsageResponse]:
        v = Violations()
        start, end = _range(v, request)
        kind = convert.export_kind_from_pb(v, request.kind)
        v.raise_if_any()
        query = ExportQuery(
            start_us=start,
            end_us=end,
            account_id=request.account_id,
            kind=kind,
            time_zone=request.time_zone,
            page_token=request.page_token,
        )
        run = await self.run(lambda: self._exports.export(query))
        while (messages := await self.run(lambda: _next_messages(run))) is not None:
            for message in messages:
                yield message
        yield admin_pb.ExportUsageResponse(totals=convert.export_totals_pb(run.totals))

    @mapped
    async def CreateAccount(
        self, request: admin_pb.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.CreateAccountResponse:
        v = Violations()
        mode = convert.mode_from_pb(v, request.billing_mode)
        policy = convert.policy_from_pb(v, request.unpriced_policy)
        asset = convert.asset_from_pb(v, request.request_asset)
        expiry = convert.expiry_policy_from_pb(v, request.reservation_expiry_policy)
        default_price = convert.money_from_pb(
            v, "default_request_price", request.default_request_price
        )
        tenant_id = new_account_tenant(v, request.tenant_id)
        v.raise_if_any()
        cmd = commands.CreateAccount(
            account_id=request.account_id,
            tenant_id=tenant_id,
            currency_code=request.currency_code or "USD",
            billing_mode=mode,
            allow_negative_balance=request.allow_negative_balance,
            unpriced_policy=policy,
            price_adjustment_bps=request.price_adjustment_bps,
            request_asset=asset,
            default_request_price_nanos=default_price.nanos,
            default_request_credits=request.default_request_credits or 1,
            reservation_expiry_policy=expiry,
            time_zone=request.time_zone or "UTC",
        )
        account = await self.run(lambda: self._metering.create_account(cmd))
        return admin_pb.CreateAccountResponse(account=convert.account_pb(account))

    @mapped
    async def UpdateAccount(
        self, request: admin_pb.UpdateAccountRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.UpdateAccountResponse:
        v = Violations()
        changes = convert.account_changes_from_pb(
            v, request.account, list(request.update_mask.paths)
        )
        v.raise_if_any()
        cmd = commands.UpdateAccount(request.account.account_id, changes)
        account = await self.run(lambda: self._metering.update_account(cmd))
        return admin_pb.UpdateAccountResponse(account=convert.account_pb(account))

    @mapped
    async def SetApiKeyBillingMode(
        self, request: admin_pb.SetApiKeyBillingModeRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.SetApiKeyBillingModeResponse:
        v = Violations()
        mode = (
            convert.mode_from_pb(v, request.billing_mode)
            if request.billing_mode != types_pb2.BILLING_MODE_UNSPECIFIED
            else None
        )
        v.raise_if_any()
        effective = await self.run(
            lambda: self._metering.set_api_key_billing_mode(
                request.account_id, request.api_key_id, mode
            )
        )
        return admin_pb.SetApiKeyBillingModeResponse(
            effective_billing_mode=convert.mode_pb(effective)
        )

    @mapped
    async def SetBudget(
        self, request: admin_pb.SetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.SetBudgetResponse:
        v = Violations()
        budget = convert.budget_from_pb(v, request.budget)
        v.raise_if_any()
        stored = await self.run(lambda: self._metering.set_budget(budget))
        return admin_pb.SetBudgetResponse(budget=convert.budget_pb(stored))

    @mapped
    async def ListBudgets(
        self, request: admin_pb.ListBudgetsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.ListBudgetsResponse:
        budgets = await self.run(lambda: self._metering.list_budgets(request.account_id))
        return admin_pb.ListBudgetsResponse(budgets=[convert.budget_pb(b) for b in budgets])

    @mapped
    async def DeleteBudget(
        self, request: admin_pb.DeleteBudgetRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.DeleteBudgetResponse:
        await self.run(lambda: self._metering.delete_budget(request.account_id, request.budget_id))
        return admin_pb.DeleteBudgetResponse()

    @mapped
    async def ListBudgetEvents(
        self, request: admin_pb.ListBudgetEventsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.ListBudgetEventsResponse:
        events, token = await self.run(
            lambda: self._metering.budget_events(
                request.account_id, request.page_size, request.page_token
            )
        )
        return admin_pb.ListBudgetEventsResponse(
            events=[convert.budget_event_pb(e) for e in events], next_page_token=token
        )

    @mapped
    async def SetMissingUsagePolicy(
        self, request: admin_pb.SetMissingUsagePolicyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.SetMissingUsagePolicyResponse:
        v = Violations()
        policy = convert.missing_policy_from_pb(v, request.policy)
        v.raise_if_any()
        stored = await self.run(lambda: self._metering.set_missing_usage_policy(policy))
        return admin_pb.SetMissingUsagePolicyResponse(policy=convert.missing_policy_pb(stored))

    @mapped
    async def ListMissingUsagePolicies(
        self, request: admin_pb.ListMissingUsagePoliciesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.ListMissingUsagePoliciesResponse:
        policies = await self.run(self._metering.list_missing_usage_policies)
        return admin_pb.ListMissingUsagePoliciesResponse(
            policies=[convert.missing_policy_pb(p) for p in policies],
            default_policy=convert.missing_policy_pb(DEFAULT_POLICY),
        )

    @mapped
    async def DeleteMissingUsagePolicy(
        self, request: admin_pb.DeleteMissingUsagePolicyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.DeleteMissingUsagePolicyResponse:
        await self.run(
            lambda: self._metering.delete_missing_usage_policy(
                request.account_id, request.provider, request.model
            )
        )
        return admin_pb.DeleteMissingUsagePolicyResponse()

    @mapped
    async def Reconcile(
        self, request: admin_pb.ReconcileRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.ReconcileResponse:
        v = Violations()
        fmt = convert.upstream_format_from_pb(v, request.format)
        if not request.export_data:
            v.add("export_data", "export_data is required")
        v.raise_if_any()
        options = ReconcileOptions(
            provider=request.provider,
            account_id=request.account_id,
            key_map=dict(request.key_map),
            token_tolerance=request.token_tolerance,
            cost_tolerance_nanos=request.cost_tolerance_nanos,
            apply=request.apply,
            start_day=request.start_day,
            end_day=request.end_day,
            tokens_only=request.tokens_only,
        )
        report = await self.run(
            lambda: self._reconciler.reconcile(request.export_data, fmt, options)
        )
        return convert.reconcile_response_pb(report)

    @mapped
    async def ListPrices(
        self, request: admin_pb.ListPricesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.ListPricesResponse:
        entries, token = await self.run(
            lambda: self._prices.list_prices(
                request.provider,
                request.model,
                request.account_id,
                request.all_versions,
                request.page_size,
                request.page_token,
            )
        )
        return admin_pb.ListPricesResponse(
            prices=[convert.price_entry_pb(entry) for entry in entries], next_page_token=token
        )

    @mapped
    async def AddPrice(
        self, request: admin_pb.AddPriceRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.AddPriceResponse:
        v = Violations()
        entry = convert.price_entry_to_dict(v, request.price)
        v.raise_if_any()
        stored = await self.run(lambda: self._prices.add_price(entry))
        return admin_pb.AddPriceResponse(price=convert.price_entry_pb(stored))

    @mapped
    async def RetirePrice(
        self, request: admin_pb.RetirePriceRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.RetirePriceResponse:
        v = Violations()
        at = (
            convert.time_us_from_pb(v, "retire_time", request.retire_time)
            if request.HasField("retire_time")
            else None
        )
        if not request.price_id:
            v.add("price_id", "price_id is required")
        v.raise_if_any()
        stored = await self.run(lambda: self._prices.retire_price(request.price_id, at))
        return admin_pb.RetirePriceResponse(price=convert.price_entry_pb(stored))

    @mapped
    async def ImportPrices(
        self, request: admin_pb.ImportPricesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.ImportPricesResponse:
        v = Violations()
        at = (
            convert.time_us_from_pb(v, "effective_time", request.effective_time)
            if request.HasField("effective_time")
            else None
        )
        fmt = {
            prices_pb2.PRICE_FILE_FORMAT_METERING: "METERING",
            prices_pb2.PRICE_FILE_FORMAT_LITELLM: "LITELLM",
        }.get(request.format)
        if request.format and fmt is None:
            v.add("format", f"unknown format {request.format}")
        if len(request.source) > 256:
            v.add("source", "source must be at most 256 characters")
        v.raise_if_any()
        report = await self.run(
            lambda: import_prices(
                self._prices,
                request.content,
                fmt,
                request.source or "ImportPrices",
                at,
                request.dry_run,
            )
        )
        return admin_pb.ImportPricesResponse(
            added_count=len(report.added),
            unchanged_count=report.unchanged,
            skipped_count=report.skipped,
            added_price_ids=report.added,
        )

    @mapped
    async def GrantCredits(
        self, request: admin_pb.GrantCreditsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb.GrantCreditsResponse:
        v = Violations()
        amount = (
            convert.money_from_pb(v, "amount", request.amount)
            if request.HasField("amount")
            else Money("", 0)
        )
        v.raise_if_any()
        cmd = commands.GrantCredits(
            account_id=request.account_id,
            request_id=request.request_id,
            amount_nanos=amount.nanos,
            currency_code=amount.currency_code,
            request_credits=request.request_credits,
            reason=request.reason,
        )
        result = await self.run(lambda: self._metering.grant_credits(cmd))
        return admin_pb.GrantCreditsResponse(
            balance=convert.money_pb(Money(result.currency_code, result.balance_nanos)),
            request_credits=result.request_credits,
            replayed=result.replayed,
            transaction_id=result.transaction_id,
        )


__all__ = ["MeteringAdminServicer", "MeteringServicer", "types_pb2"]
