import { Metadata, status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import {
  BadRequest,
  ErrorInfo,
  PreconditionFailure,
  RetryInfo,
} from "./gen-rpc/google/rpc/error_details";
import { Status } from "./gen-rpc/google/rpc/status";
import type { RecordError } from "./gen/metering/v1/metering_service";

/** The trailer in which gRPC servers put a serialized google.rpc.Status. */
export const STATUS_DETAILS_TRAILER = "grpc-status-details-bin";

const TYPE_PREFIX = "type.googleapis.com/";

/** One offending field of an INVALID_ARGUMENT error (google.rpc.BadRequest). */
export interface FieldViolation {
  /** The field path, e.g. "usage.input_tokens". */
  field: string;
  /** Why the value is wrong. */
  description: string;
  /** A machine-readable reason, when the server gives one. */
  reason?: string;
}

/** The decoded google.rpc.Status of a failed call. */
export interface StatusDetails {
  code: number;
  message: string;
  errorInfo?: ErrorInfo;
  badRequest?: BadRequest;
  preconditionFailure?: PreconditionFailure;
  retryInfo?: RetryInfo;
  /** type URLs of detail messages this client does not decode. */
  otherDetailTypes: string[];
}

const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(GrpcStatus)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v as number, k]),
);

/** The canonical name of a gRPC status code, e.g. 5 -> "NOT_FOUND". */
export function codeName(code: number): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/** The gRPC status code of a canonical name, e.g. "NOT_FOUND" -> 5. */
export function codeFromName(name: string): number | undefined {
  const v = (GrpcStatus as unknown as Record<string, number>)[name];
  return typeof v === "number" ? v : undefined;
}

/**
 * Decodes a serialized google.rpc.Status (the value of the
 * grpc-status-details-bin trailer) with its ErrorInfo, BadRequest,
 * PreconditionFailure and RetryInfo details. Returns undefined when the bytes
 * are not a Status.
 */
export function decodeStatusDetails(bytes: Uint8Array): StatusDetails | undefined {
  let st: Status;
  try {
    st = Status.decode(bytes);
  } catch {
    return undefined;
  }
  const out: StatusDetails = { code: st.code, message: st.message, otherDetailTypes: [] };
  for (const any of st.details) {
    const type = any.typeUrl.startsWith(TYPE_PREFIX)
      ? any.typeUrl.slice(TYPE_PREFIX.length)
      : any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
    try {
      switch (type) {
        case "google.rpc.ErrorInfo":
          out.errorInfo = ErrorInfo.decode(any.value);
          break;
        case "google.rpc.BadRequest":
          out.badRequest = BadRequest.decode(any.value);
          break;
        case "google.rpc.PreconditionFailure":
          out.preconditionFailure = PreconditionFailure.decode(any.value);
          break;
        case "google.rpc.RetryInfo":
          out.retryInfo = RetryInfo.decode(any.value);
          break;
        default:
          out.otherDetailTypes.push(any.typeUrl);
      }
    } catch {
      out.otherDetailTypes.push(any.typeUrl);
    }
  }
  return out;
}

export interface MeteringErrorInit {
  code: number;
  message: string;
  reason?: string;
  domain?: string;
  errorMetadata?: Record<string, string>;
  fieldViolations?: FieldViolation[];
  details?: StatusDetails;
  metadata?: Metadata;
  /** The RPC, e.g. "MeteringService/RecordUsage". */
  rpc?: string;
  /** How many attempts were made (1 = no retry). */
  attempts?: number;
  cause?: unknown;
}

/**
 * The error of a failed metering call: the gRPC status code, the stable
 * ErrorInfo reason (e.g. "ACCOUNT_NOT_FOUND") and, for INVALID_ARGUMENT, the
 * offending fields from BadRequest. Subclasses exist per status code, so
 * `err instanceof NotFoundError` works as well as `err.code === status.NOT_FOUND`
 * or `err.reason === "ACCOUNT_NOT_FOUND"`.
 */
export class MeteringError extends Error {
  /** The gRPC status code (numeric, as in @grpc/grpc-js `status`). */
  readonly code: number;
  /** The canonical name of code, e.g. "NOT_FOUND". */
  readonly codeName: string;
  /** The stable ErrorInfo reason, e.g. "PRICE_NOT_FOUND"; "" when the server sent none. */
  readonly reason: string;
  /** The ErrorInfo domain ("metering.dev"); "" when absent. */
  readonly domain: string;
  /** The ErrorInfo metadata map. */
  readonly errorMetadata: Record<string, string>;
  /** The BadRequest field violations (INVALID_ARGUMENT). */
  readonly fieldViolations: FieldViolation[];
  /** The decoded google.rpc.Status, when the server sent one. */
  readonly details?: StatusDetails;
  /** The response trailers. */
  readonly metadata?: Metadata;
  /** The RPC that failed, e.g. "MeteringService/RecordUsage". */
  readonly rpc?: string;
  /** The number of attempts made (retries + 1). */
  readonly attempts: number;

  constructor(init: MeteringErrorInit) {
    super(init.message, init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = new.target.name;
    this.code = init.code;
    this.codeName = codeName(init.code);
    this.reason = init.reason ?? "";
    this.domain = init.domain ?? "";
    this.errorMetadata = init.errorMetadata ?? {};
    this.fieldViolations = init.fieldViolations ?? [];
    this.details = init.details;
    this.metadata = init.metadata;
    this.rpc = init.rpc;
    this.attempts = init.attempts ?? 1;
  }

  /** The offending field paths, e.g. ["usage.input_tokens"]. */
  get fields(): string[] {
    return this.fieldViolations.map((v) => v.field);
  }

  /** True for UNAVAILABLE and DEADLINE_EXCEEDED: the call may succeed if retried. */
  get retryable(): boolean {
    return this.code === GrpcStatus.UNAVAILABLE || this.code === GrpcStatus.DEADLINE_EXCEEDED;
  }

  /**
   * Builds the error of a batch record (RecordUsageBatch's RecordError, the
   * same status flattened).
   */
  static fromRecordError(e: RecordError, rpc = "MeteringService/RecordUsageBatch"): MeteringError {
    return makeError({
      code: e.code,
      message: e.message,
      reason: e.reason,
      domain: "metering.dev",
      fieldViolations: e.fields.map((field) => ({ field, description: "" })),
      rpc,
    });
  }
}

export class CancelledError extends MeteringError {}
export class UnknownError extends MeteringError {}
export class InvalidArgumentError extends MeteringError {}
export class DeadlineExceededError extends MeteringError {}
export class NotFoundError extends MeteringError {}
export class AlreadyExistsError extends MeteringError {}
export class PermissionDeniedError extends MeteringError {}
export class ResourceExhaustedError extends MeteringError {}
export class FailedPreconditionError extends MeteringError {}
export class AbortedError extends MeteringError {}
export class OutOfRangeError extends MeteringError {}
export class UnimplementedError extends MeteringError {}
export class InternalError extends MeteringError {}
export class UnavailableError extends MeteringError {}
export class DataLossError extends MeteringError {}
export class UnauthenticatedError extends MeteringError {}

const CLASSES: Record<number, new (init: MeteringErrorInit) => MeteringError> = {
  [GrpcStatus.CANCELLED]: CancelledError,
  [GrpcStatus.UNKNOWN]: UnknownError,
  [GrpcStatus.INVALID_ARGUMENT]: InvalidArgumentError,
  [GrpcStatus.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [GrpcStatus.NOT_FOUND]: NotFoundError,
  [GrpcStatus.ALREADY_EXISTS]: AlreadyExistsError,
  [GrpcStatus.PERMISSION_DENIED]: PermissionDeniedError,
  [GrpcStatus.RESOURCE_EXHAUSTED]: ResourceExhaustedError,
  [GrpcStatus.FAILED_PRECONDITION]: FailedPreconditionError,
  [GrpcStatus.ABORTED]: AbortedError,
  [GrpcStatus.OUT_OF_RANGE]: OutOfRangeError,
  [GrpcStatus.UNIMPLEMENTED]: UnimplementedError,
  [GrpcStatus.INTERNAL]: InternalError,
  [GrpcStatus.UNAVAILABLE]: UnavailableError,
  [GrpcStatus.DATA_LOSS]: DataLossError,
  [GrpcStatus.UNAUTHENTICATED]: UnauthenticatedError,
};

function makeError(init: MeteringErrorInit): MeteringError {
  const Cls = CLASSES[init.code] ?? MeteringError;
  return new Cls(init);
}

function isServiceError(e: unknown): e is ServiceError {
  return (
    typeof e === "object" && e !== null && typeof (e as ServiceError).code === "number" && "details" in e
  );
}

/**
 * Converts an error of a @grpc/grpc-js call into a MeteringError, decoding
 * the google.rpc.Status in the grpc-status-details-bin trailer. Anything
 * else (already a MeteringError, or not a gRPC error) is returned as is or
 * wrapped as UNKNOWN.
 */
export function toMeteringError(e: unknown, rpc?: string, attempts = 1): MeteringError {
  if (e instanceof MeteringError) return e;
  if (!isServiceError(e)) {
    return makeError({
      code: GrpcStatus.UNKNOWN,
      message: e instanceof Error ? e.message : String(e),
      rpc,
      attempts,
      cause: e,
    });
  }
  let details: StatusDetails | undefined;
  const raw = e.metadata?.get(STATUS_DETAILS_TRAILER) ?? [];
  for (const v of raw) {
    const bytes = typeof v === "string" ? Buffer.from(v, "base64") : v;
    details = decodeStatusDetails(bytes);
    if (details) break;
  }
  const message = details?.message || e.details || e.message;
  const fieldViolations: FieldViolation[] = (details?.badRequest?.fieldViolations ?? []).map((v) => ({
    field: v.field,
    description: v.description,
    ...(v.reason ? { reason: v.reason } : {}),
  }));
  return makeError({
    code: e.code,
    message: rpc ? `${rpc}: ${codeName(e.code)}: ${message}` : `${codeName(e.code)}: ${message}`,
    reason: details?.errorInfo?.reason,
    domain: details?.errorInfo?.domain,
    errorMetadata: details?.errorInfo?.metadata,
    fieldViolations,
    details,
    metadata: e.metadata,
    rpc,
    attempts,
    cause: e,
  });
}

/** True when e is a MeteringError, optionally with this reason. */
export function isMeteringError(e: unknown, reason?: string): e is MeteringError {
  return e instanceof MeteringError && (reason === undefined || e.reason === reason);
}
