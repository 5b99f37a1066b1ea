import {
  Client,
  credentials as grpcCredentials,
  Metadata,
  status as GrpcStatus,
  type ChannelCredentials,
  type ClientOptions,
  type ClientUnaryCall,
  type Interceptor,
  type ServiceError,
} from "@grpc/grpc-js";
import {
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
  MeteringAdminServiceService,
  RetirePriceRequest,
  RetirePriceResponse,
  SetApiKeyBillingModeRequest,
  SetApiKeyBillingModeResponse,
  UpdateAccountRequest,
  UpdateAccountResponse,
} from "./gen/metering/v1/admin_service";
import {
  CorrectUsageRequest,
  CorrectUsageResponse,
  EstimateTokensRequest,
  EstimateTokensResponse,
  GetBalanceRequest,
  GetBalanceResponse,
  MeteringServiceService,
  RecordUsageBatchRequest,
  RecordUsageBatchResponse,
  RecordUsageRequest,
  RecordUsageResponse,
  UsageSummaryRequest,
  UsageSummaryResponse,
  type DeepPartial,
} from "./gen/metering/v1/metering_service";
import { MeteringError, toMeteringError } from "./errors";
import { backoffDelay, sleep, type RetryPolicy, DEFAULT_RETRY } from "./retry";

/** The encode/decode/JSON functions ts-proto generates for a message. */
export interface MessageCodec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  fromJSON(object: unknown): T;
  toJSON(message: T): unknown;
  fromPartial(object: DeepPartial<T>): T;
}

/** One unary RPC of metering.v1. */
export interface RpcDescriptor<Req, Res> {
  /** "MeteringService/RecordUsage" */
  name: string;
  /** "/metering.v1.MeteringService/RecordUsage" */
  path: string;
  request: MessageCodec<Req>;
  response: MessageCodec<Res>;
  /** Whether repeating the call is harmless (it is retried on UNAVAILABLE / DEADLINE_EXCEEDED). */
  idempotent: boolean;
  /** Default per-attempt deadline, in milliseconds. */
  defaultTimeoutMs: number;
}

function rpc<Req, Res>(
  service: "MeteringService" | "MeteringAdminService",
  method: string,
  def: { path: string },
  request: unknown,
  response: unknown,
  idempotent: boolean,
  defaultTimeoutMs: number,
): RpcDescriptor<Req, Res> {
  return {
    name: `${service}/${method}`,
    path: def.path,
    request: request as MessageCodec<Req>,
    response: response as MessageCodec<Res>,
    idempotent,
    defaultTimeoutMs,
  };
}

/**
 * Every RPC of metering.v1, keyed by "Service/Method". Idempotent ones are
 * retried: RecordUsage, RecordUsageBatch and GrantCredits through their
 * request_id, CorrectUsage through its correction_id (derived by the server
 * from request_id and the payload when not given), the reads trivially; CreateAccount, AddPrice and RetirePrice
 * are not retried (a repeat is an error or a second version).
 */
export const RPCS = {
  "MeteringService/RecordUsage": rpc<RecordUsageRequest, RecordUsageResponse>(
    "MeteringService", "RecordUsage", MeteringServiceService.recordUsage, RecordUsageRequest, RecordUsageResponse, true, 5_000),
  "MeteringService/RecordUsageBatch": rpc<RecordUsageBatchRequest, RecordUsageBatchResponse>(
    "MeteringService", "RecordUsageBatch", MeteringServiceService.recordUsageBatch, RecordUsageBatchRequest, RecordUsageBatchResponse, true, 15_000),
  "MeteringService/EstimateTokens": rpc<EstimateTokensRequest, EstimateTokensResponse>(
    "MeteringService", "EstimateTokens", MeteringServiceService.estimateTokens, EstimateTokensRequest, EstimateTokensResponse, true, 2_000),
  "MeteringService/GetBalance": rpc<GetBalanceRequest, GetBalanceResponse>(
    "MeteringService", "GetBalance", MeteringServiceService.getBalance, GetBalanceRequest, GetBalanceResponse, true, 2_000),
  "MeteringService/CorrectUsage": rpc<CorrectUsageRequest, CorrectUsageResponse>(
    "MeteringService", "CorrectUsage", MeteringServiceService.correctUsage, CorrectUsageRequest, CorrectUsageResponse, true, 5_000),
  "MeteringService/UsageSummary": rpc<UsageSummaryRequest, UsageSummaryResponse>(
    "MeteringService", "UsageSummary", MeteringServiceService.usageSummary, UsageSummaryRequest, UsageSummaryResponse, true, 30_000),
  "MeteringAdminService/CreateAccount": rpc<CreateAccountRequest, CreateAccountResponse>(
    "MeteringAdminService", "CreateAccount", MeteringAdminServiceService.createAccount, CreateAccountRequest, CreateAccountResponse, false, 5_000),
  "MeteringAdminService/GrantCredits": rpc<GrantCreditsRequest, GrantCreditsResponse>(
    "MeteringAdminService", "GrantCredits", MeteringAdminServiceService.grantCredits, GrantCreditsRequest, GrantCreditsResponse, true, 5_000),
  "MeteringAdminService/UpdateAccount": rpc<UpdateAccountRequest, UpdateAccountResponse>(
    "MeteringAdminService", "UpdateAccount", MeteringAdminServiceService.updateAccount, UpdateAccountRequest, UpdateAccountResponse, true, 5_000),
  "MeteringAdminService/SetApiKeyBillingMode": rpc<SetApiKeyBillingModeRequest, SetApiKeyBillingModeResponse>(
    "MeteringAdminService", "SetApiKeyBillingMode", MeteringAdminServiceService.setApiKeyBillingMode, SetApiKeyBillingModeRequest, SetApiKeyBillingModeResponse, true, 5_000),
  "MeteringAdminService/ListPrices": rpc<ListPricesRequest, ListPricesResponse>(
    "MeteringAdminService", "ListPrices", MeteringAdminServiceService.listPrices, ListPricesRequest, ListPricesResponse, true, 10_000),
  "MeteringAdminService/AddPrice": rpc<AddPriceRequest, AddPriceResponse>(
    "MeteringAdminService", "AddPrice", MeteringAdminServiceService.addPrice, AddPriceRequest, AddPriceResponse, false, 5_000),
  "MeteringAdminService/RetirePrice": rpc<RetirePriceRequest, RetirePriceResponse>(
    "MeteringAdminService", "RetirePrice", MeteringAdminServiceService.retirePrice, RetirePriceRequest, RetirePriceResponse, false, 5_000),
  "MeteringAdminService/ImportPrices": rpc<ImportPricesRequest, ImportPricesResponse>(
    "MeteringAdminService", "ImportPrices", MeteringAdminServiceService.importPrices, ImportPricesRequest, ImportPricesResponse, true, 60_000),
} as const;

export type RpcName = keyof typeof RPCS;
type ReqOf<N extends RpcName> = (typeof RPCS)[N] extends RpcDescriptor<infer Q, unknown> ? Q : never;
type ResOf<N extends RpcName> = (typeof RPCS)[N] extends RpcDescriptor<unknown, infer S> ? S : never;

/** Options of one call. */
export interface CallOptions {
  /** Per-attempt deadline in milliseconds (default: the RPC's default, or the client's). */
  timeoutMs?: number;
  /** Overall budget in milliseconds across all attempts and backoff sleeps. */
  totalTimeoutMs?: number;
  /** Retry policy override; `{ maxAttempts: 1 }` disables retries. */
  retry?: Partial<RetryPolicy>;
  /** Extra request metadata. */
  metadata?: Metadata | Record<string, string>;
  /** Aborts the call (and any retry). */
  signal?: AbortSignal;
}

export interface MeteringClientOptions {
  /** "host:port" of the metering server, e.g. "127.0.0.1:50051". */
  address: string;
  /** Default: insecure (plaintext), as for a sidecar or a private network. */
  credentials?: ChannelCredentials;
  /** Default per-attempt deadline overriding every RPC's own default, in ms. */
  timeoutMs?: number;
  /** Per-RPC per-attempt deadlines, e.g. { "MeteringService/RecordUsage": 3000 }. */
  timeouts?: Partial<Record<RpcName, number>>;
  /** Retry policy for idempotent RPCs (default: 5 attempts, 100 ms doubling to 5 s, 20% jitter). */
  retry?: Partial<RetryPolicy>;
  /** Channel options and interceptors for @grpc/grpc-js. */
  grpcOptions?: ClientOptions;
  /** Interceptors applied to every call (e.g. for logging); real gRPC, no mocking. */
  interceptors?: Interceptor[];
  /** Metadata sent with every call. */
  metadata?: Record<string, string>;
}

const DEFAULT_CHANNEL_OPTIONS: ClientOptions = {
  // Reconnect quickly after the server restarts (grpc-js defaults: 1 s x1.6 up to 120 s).
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
};

/**
 * Promise-based client of the metering service (metering.v1). Every call has
 * a deadline; idempotent calls are retried on UNAVAILABLE and
 * DEADLINE_EXCEEDED with exponential backoff and jitter, sending the very same
 * request (so the same request_id: the server records it exactly once).
 * Failures are thrown as MeteringError (subclasses per status code) with the
 * ErrorInfo reason and BadRequest field violations.
 */
export class MeteringClient {
  readonly address: string;
  private readonly grpc: Client;
  private readonly opts: MeteringClientOptions;
  private readonly retryPolicy: RetryPolicy;
  private closed = false;

  constructor(options: MeteringClientOptions | string) {
    const opts = typeof options === "string" ? { address: options } : options;
    this.opts = opts;
    this.address = opts.address;
    this.retryPolicy = { ...DEFAULT_RETRY, ...opts.retry };
    this.grpc = new Client(opts.address, opts.credentials ?? grpcCredentials.createInsecure(), {
      ...DEFAULT_CHANNEL_OPTIONS,
      ...opts.grpcOptions,
      ...(opts.interceptors ? { interceptors: opts.interceptors } : {}),
    });
  }

  // --- MeteringService -------------------------------------------------------

  /**
   * Records the usage of one LLM call. request_id is required (the idempotency
   * key). Without usage (and without usage in responseJson) the server
   * estimates it from requestJson (or promptText) and completionText
   * (usageSource ESTIMATED), else records it as MISSING (missingUsageFallback
   * says what it was charged).
   */
  recordUsage(req: DeepPartial<RecordUsageRequest>, opts?: CallOptions): Promise<RecordUsageResponse> {
    return this.call("MeteringService/RecordUsage", req, opts);
  }

  /**
   * Supersedes a recorded call's usage (or cost) with a later, authoritative
   * figure: accountId and the requestId it was recorded under, with usage
   * (or responseJson), optionally an exact cost, a reason and a correctionId.
   * The difference is debited (negative: credited back) and the call counts
   * as USAGE_SOURCE_CORRECTED from then on. Idempotent per correctionId,
   * which the server derives from requestId and the payload when empty: a
   * repeat (or a retry) of the same figure answers replayed = true and
   * changes nothing. Throws NotFoundError (RECORD_NOT_FOUND,
   * ACCOUNT_NOT_FOUND), AlreadyExistsError (REQUEST_ID_CONFLICT: the
   * correctionId was used with another payload), InvalidArgumentError,
   * FailedPreconditionError.
   */
  correctUsage(req: DeepPartial<CorrectUsageRequest>, opts?: CallOptions): Promise<CorrectUsageResponse> {
    return this.call("MeteringService/CorrectUsage", req, opts);
  }

  /** Records up to 1000 records; each gets its own result. */
  recordUsageBatch(req: DeepPartial<RecordUsageBatchRequest>, opts?: CallOptions): Promise<RecordUsageBatchResponse> {
    return this.call("MeteringService/RecordUsageBatch", req, opts);
  }

  /** Counts the tokens of a text or a raw provider request and prices them. */
  estimateTokens(req: DeepPartial<EstimateTokensRequest>, opts?: CallOptions): Promise<EstimateTokensResponse> {
    return this.call("MeteringService/EstimateTokens", req, opts);
  }

  getBalance(req: DeepPartial<GetBalanceRequest> | string, opts?: CallOptions): Promise<GetBalanceResponse> {
    return this.call("MeteringService/GetBalance", typeof req === "string" ? { accountId: req } : req, opts);
  }

  usageSummary(req: DeepPartial<UsageSummaryRequest>, opts?: CallOptions): Promise<UsageSummaryResponse> {
    return this.call("MeteringService/UsageSummary", req, opts);
  }

  // --- MeteringAdminService --------------------------------------------------

  createAccount(req: DeepPartial<CreateAccountRequest>, opts?: CallOptions): Promise<CreateAccountResponse> {
    return this.call("MeteringAdminService/CreateAccount", req, opts);
  }

  grantCredits(req: DeepPartial<GrantCreditsRequest>, opts?: CallOptions): Promise<GrantCreditsResponse> {
    return this.call("MeteringAdminService/GrantCredits", req, opts);
  }

  updateAccount(req: DeepPartial<UpdateAccountRequest>, opts?: CallOptions): Promise<UpdateAccountResponse> {
    return this.call("MeteringAdminService/UpdateAccount", req, opts);
  }

  setApiKeyBillingMode(
    req: DeepPartial<SetApiKeyBillingModeRequest>,
    opts?: CallOptions,
  ): Promise<SetApiKeyBillingModeResponse> {
    return this.call("MeteringAdminService/SetApiKeyBillingMode", req, opts);
  }

  listPrices(req: DeepPartial<ListPricesRequest>, opts?: CallOptions): Promise<ListPricesResponse> {
    return this.call("MeteringAdminService/ListPrices", req, opts);
  }

  addPrice(req: DeepPartial<AddPriceRequest>, opts?: CallOptions): Promise<AddPriceResponse> {
    return this.call("MeteringAdminService/AddPrice", req, opts);
  }

  retirePrice(req: DeepPartial<RetirePriceRequest>, opts?: CallOptions): Promise<RetirePriceResponse> {
    return this.call("MeteringAdminService/RetirePrice", req, opts);
  }

  importPrices(req: DeepPartial<ImportPricesRequest>, opts?: CallOptions): Promise<ImportPricesResponse> {
    return this.call("MeteringAdminService/ImportPrices", req, opts);
  }

  // --- generic ---------------------------------------------------------------

  /**
   * Calls any RPC by name with a partial request (missing fields take their
   * proto defaults), with deadlines and retries.
   */
  call<N extends RpcName>(name: N, req: DeepPartial<ReqOf<N>>, opts: CallOptions = {}): Promise<ResOf<N>> {
    const d = RPCS[name] as unknown as RpcDescriptor<ReqOf<N>, ResOf<N>>;
    const message = d.request.fromPartial(req as DeepPartial<ReqOf<N>>);
    return this.invoke(d, message, opts);
  }

  /** Calls an RPC with a complete request message. */
  async invoke<Req, Res>(d: RpcDescriptor<Req, Res>, message: Req, opts: CallOptions = {}): Promise<Res> {
    if (this.closed) {
      throw new MeteringError({ code: GrpcStatus.CANCELLED, message: "MeteringClient is closed", rpc: d.name });
    }
    const policy: RetryPolicy = { ...this.retryPolicy, ...opts.retry };
    const maxAttempts = d.idempotent || opts.retry?.maxAttempts !== undefined ? Math.max(1, policy.maxAttempts) : 1;
    const attemptTimeout =
      opts.timeoutMs ?? this.opts.timeouts?.[d.name as RpcName] ?? this.opts.timeoutMs ?? d.defaultTimeoutMs;
    const started = Date.now();
    const budgetEnd = opts.totalTimeoutMs !== undefined ? started + opts.totalTimeoutMs : Infinity;
    // Serialize once: every attempt sends the very same bytes (same request_id).
    const bytes = Buffer.from(d.request.encode(message).finish());
    const metadata = this.buildMetadata(opts.metadata);
    for (let attempt = 1; ; attempt++) {
      const deadline = Math.min(Date.now() + attemptTimeout, budgetEnd);
      try {
        return await this.unary(d, bytes, metadata.clone(), deadline, opts.signal);
      } catch (e) {
        const err = toMeteringError(e, d.name, attempt);
        const retryable = policy.retryableCodes.includes(err.code) && !opts.signal?.aborted;
        if (!retryable || attempt >= maxAttempts) throw err;
        const delay = backoffDelay(policy, attempt);
        if (Date.now() + delay >= budgetEnd) throw err;
        await sleep(delay, opts.signal);
        if (opts.signal?.aborted) throw err;
      }
    }
  }

  private unary<Req, Res>(
    d: RpcDescriptor<Req, Res>,
    bytes: Buffer,
    metadata: Metadata,
    deadline: number,
    signal?: AbortSignal,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new MeteringError({ code: GrpcStatus.CANCELLED, message: "aborted", rpc: d.name }));
        return;
      }
      let call: ClientUnaryCall | undefined;
      const onAbort = () => call?.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      call = this.grpc.makeUnaryRequest<Buffer, Res>(
        d.path,
        (b) => b,
        (b) => d.response.decode(b),
        bytes,
        metadata,
        { deadline },
        (err: ServiceError | null, res?: Res) => {
          signal?.removeEventListener("abort", onAbort);
          if (err) reject(err);
          else resolve(res as Res);
        },
      );
    });
  }

  private buildMetadata(extra?: Metadata | Record<string, string>): Metadata {
    const md = new Metadata();
    for (const [k, v] of Object.entries(this.opts.metadata ?? {})) md.set(k, v);
    if (extra instanceof Metadata) md.merge(extra);
    else if (extra) for (const [k, v] of Object.entries(extra)) md.set(k, v);
    return md;
  }

  /**
   * Resolves when the channel is connected (or rejects after timeoutMs).
   * Not needed before calls; useful in start-up probes.
   */
  waitForReady(timeoutMs = 5_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.grpc.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Closes the channel; later calls fail with CANCELLED. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.grpc.close();
  }
}
