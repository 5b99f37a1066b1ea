export { MeteringClient, RPCS } from "./client";
export type { CallOptions, MeteringClientOptions, MessageCodec, RpcDescriptor, RpcName } from "./client";
export * from "./errors";
export { DEFAULT_RETRY, backoffDelay } from "./retry";
export type { RetryPolicy } from "./retry";
export { UsageReporter } from "./reporter";
export type { Durability, ReporterStats, UsageReporterEvents, UsageReporterOptions } from "./reporter";
export { Spool, SpoolLockedError } from "./spool";
export {
  MAX_RAW_BYTES,
  MAX_TEXT_CHARS,
  SseTail,
  estimateFromRequest,
  recordUsageFromResponse,
  responseIdOf,
  toApiFormat,
} from "./usage";
export type { ApiFormatName, RawUsageInput } from "./usage";
export { status } from "@grpc/grpc-js";
export { ApiFormat, BillingMode, MissingUsageFallback, Money, TokenUsage, UsageSource } from "./gen/metering/v1/types";
export { LongContextTier, PriceEntry, PriceFileFormat, RequestAsset, UnpricedPolicy } from "./gen/metering/v1/prices";
export {
  CorrectUsageRequest,
  CorrectUsageResponse,
  EstimateMethod,
  Granularity,
  GroupBy,
  EstimateTokensRequest,
  EstimateTokensResponse,
  GetBalanceRequest,
  GetBalanceResponse,
  RecordError,
  RecordUsageBatchRequest,
  RecordUsageBatchResponse,
  RecordUsageRequest,
  RecordUsageResponse,
  RecordUsageResult,
  UsageSummaryRequest,
  UsageSummaryResponse,
  UsageSummaryRow,
} from "./gen/metering/v1/metering_service";
export type { DeepPartial } from "./gen/metering/v1/metering_service";
export {
  Account,
  AddPriceRequest,
  AddPriceResponse,
  CreateAccountRequest,
  CreateAccountResponse,
  GrantCreditsRequest,
  GrantCreditsResponse,
  ImportPricesRequest,
  ImportPricesResponse,
  ListPricesRequest,
  ListPricesResponse,
  RetirePriceRequest,
  RetirePriceResponse,
  SetApiKeyBillingModeRequest,
  SetApiKeyBillingModeResponse,
  UpdateAccountRequest,
  UpdateAccountResponse,
} from "./gen/metering/v1/admin_service";
